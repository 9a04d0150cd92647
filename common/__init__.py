"""What every PipelineJobs actor shares: schemas, identifiers, tokens, lifecycle, store."""

__version__ = "0.1.0"
