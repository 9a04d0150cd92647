"""The four actors. Each module holds one actor's behaviour; they never import each other."""
