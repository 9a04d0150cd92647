"""Settings: built-in defaults, then ``config.yml``, then environment, then flags.

Precedence, lowest to highest:

1. the defaults declared in the dataclasses below (``config.yml`` in the repository
   documents every one of them, and a test keeps the two equal);
2. a YAML file: the path given to :func:`load_config`, else ``$PIPELINEJOBS_CONFIG``,
   else ``./config.yml`` when it exists;
3. environment variables ``PIPELINEJOBS_<SECTION>_<KEY>`` (``PIPELINEJOBS_STORE_BACKEND``);
4. explicit overrides (command-line flags), passed as ``{"section": {"key": value}}``.

Unknown sections or keys and values of the wrong type are refused with a
:class:`~pipelinejobs.errors.ConfigError` that names the setting and where it came from:
a typo in a config file should stop start-up, not be silently ignored.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipelinejobs.errors import ConfigError

ENV_PREFIX = "PIPELINEJOBS_"
#: Every launcher backend (common/launchers), and those each mode allows by default:
#: ``slurm`` only where ``launcher.backends`` lists it (it needs a cluster to submit to).
LAUNCHER_BACKENDS = ("inline", "local", "docker", "callback", "slurm")
EMBEDDED_BACKENDS = ("inline", "local", "docker", "callback")
PRODUCTION_BACKENDS = ("inline", "docker", "callback")
#: What logging.format and logging.level may be (the level in any case).
LOG_FORMATS = ("human", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: The words a boolean setting or flag may be written as; anything else is refused.
#: The longest back-off between two attempts of a delivery (s).
MAX_RETRY_DELAY = 300.0
#: What ``gateway.public_url`` may be: http(s), a host, an optional path, no query.
PUBLIC_URL = re.compile(r"https?://[^/?#\s]+(/[^?#\s]*)?", re.ASCII)
BOOLEAN_WORDS: dict[str, bool] = {
    **dict.fromkeys(("1", "true", "yes", "on"), True),
    **dict.fromkeys(("0", "false", "no", "off"), False),
}


@dataclass(frozen=True)
class SystemSettings:
    """How this process runs."""

    #: ``embedded``: one process, SQLite and an in-process broker, data under data_dir.
    #: ``production``: external broker and store; secrets must be configured.
    mode: str = "embedded"
    #: Where the embedded mode keeps its store, secrets and archive.
    data_dir: str = "./data"
    #: CPython's thread switch interval (s) in the server processes (serve, gateway,
    #: worker). Their threads hand the interpreter to each other at every request and
    #: message; at the default 0.005 a thread woken by one waited up to that long,
    #: and the embedded server did ~25% fewer events/s (bench/events.py).
    switch_interval: float = 0.001


@dataclass(frozen=True)
class IdentifierSettings:
    """Typed UUIDs are UUID5 in the namespace UUID3(DNS, namespace_domain)."""

    namespace_domain: str = "sd2e.org"


@dataclass(frozen=True)
class TokenSettings:
    """Secrets behind update tokens and admin tokens."""

    #: HMAC key for per-document update tokens. Empty: generated (embedded) or refused.
    secret: str = ""
    #: HMAC key for admin tokens. Empty: generated (embedded) or refused.
    admin_secret: str = ""
    #: Seconds an admin token stays valid after it is minted.
    admin_token_ttl: int = 30


@dataclass(frozen=True)
class StoreSettings:
    """The document store."""

    #: ``sqlite`` (embedded default), ``mongodb`` (production) or ``memory`` (tests).
    backend: str = "sqlite"
    #: SQLite file. Empty: ``<data_dir>/pipelinejobs.sqlite3``.
    sqlite_path: str = ""
    #: Seconds a SQLite writer waits for a lock held by another process.
    sqlite_busy_timeout: float = 30.0
    #: SQLite page cache per connection, KiB. Each thread has its own connection, so
    #: a process holds (threads x this); the OS caches the file as well, so a small
    #: cache costs a read syscall per page missed, not a disk read.
    sqlite_cache_kib: int = 512
    mongodb_uri: str = "mongodb://127.0.0.1:27017"
    mongodb_database: str = "pipelinejobs"
    #: How many times a compare-and-set is retried when a concurrent writer wins: the one
    #: budget of every loop (jobs, executions, pipelines, keys, nonces). Past it, the
    #: request is answered 503 with Retry-After (nothing was written).
    cas_retries: int = 1000


@dataclass(frozen=True)
class BusSettings:
    """The message bus (Celery)."""

    #: Broker URL. Empty: ``memory://`` (in-process) in embedded mode,
    #: ``redis://127.0.0.1:6379/0`` in production. ``amqp://...`` for RabbitMQ.
    broker_url: str = ""
    #: Seconds before Redis hands an unacknowledged message to another worker. Longer
    #: than the longest actor run; a redelivery is harmless (effects are idempotent).
    visibility_timeout: int = 3600
    #: How often (s) a Redis worker looks for unacknowledged messages to restore.
    restore_interval: float = 10.0
    #: How often (s) the in-process broker is polled. A worker thread finding nothing
    #: sleeps this long, so it caps the embedded mode at about threads / interval
    #: messages/s; 0.002 s costs about 3% of a core when idle (0.05 s capped it at 80/s).
    polling_interval: float = 0.002
    #: Messages due now on Redis or the in-process broker are written as Celery's task
    #: message directly, without send_task (a quarter of the gateway's CPU per POST;
    #: pipelinejobs.adapters.bus.direct_publish); false publishes all through send_task.
    direct_publish: bool = True
    #: Seconds to wait for the broker before saying it is unreachable.
    connect_timeout: float = 5.0
    #: Retries (with exponential back-off from retry_backoff s, at most 300 s) of a
    #: delivery that failed transiently (pipelinejobs.errors.TRANSIENT: the store or
    #: broker unavailable, a document too contended).
    max_retries: int = 5
    retry_backoff: float = 1.0
    #: Seconds an actor may work on one message before it is interrupted and its
    #: execution ends ERROR (TimeLimitExceeded); 0 = no limit. Keep it below
    #: visibility_timeout, or Redis hands a message still running to a second worker.
    time_limit: float = 1800.0
    #: Per-actor limits overriding time_limit, ``"jobs-indexer=7200, launcher-proxy=60"``.
    time_limits: str = ""
    #: Seconds past its limit after which a prefork worker kills the pool process still
    #: running an actor (one blocked in a call that never returns to Python cannot be
    #: interrupted otherwise); the thread pool has no such kill (README: time limits).
    time_limit_grace: float = 30.0
    #: Executions still SUBMITTED this many s after they were last touched are
    #: re-published: by a worker starting, and by running workers (below).
    recover_after: float = 60.0
    #: How often (s) a running worker looks for SUBMITTED executions whose message was
    #: lost in flight (its actor's queue empty, the execution older than
    #: recover_after) and re-publishes them; 0 turns the sweep off. The backstop of
    #: the quicker checks below.
    recover_interval: float = 30.0
    #: How often (s) a running worker checks its broker: a Redis that lost its queues
    #: (restarted empty, flushed) gets every execution left SUBMITTED from before the
    #: loss re-published at once, and executions lost in flight are found after
    #: lost_after s. Also done as soon as a worker's broker connection comes back.
    #: 0 turns these checks off (the recover_interval sweep remains).
    check_interval: float = 2.0
    #: An execution SUBMITTED this many s, while its actor's queue is empty and the
    #: broker says no worker holds its message (Redis can tell; RabbitMQ and the
    #: in-process broker cannot, and keep their messages), is re-published at once.
    lost_after: float = 5.0
    #: Aging: a low- or medium-priority execution still waiting (SUBMITTED) this many
    #: s after it was published is published again one level up (low -> medium ->
    #: high), checked every check_interval s; so sustained high-priority work delays
    #: low work by at most about twice this, never forever. 0 turns aging off.
    priority_age: float = 300.0
    #: Worker processes (prefork) for `pipelinejobs worker`; 0 = number of CPUs.
    worker_concurrency: int = 0
    #: Worker threads in the embedded mode.
    embedded_threads: int = 4
    #: How often (s) each worker (and the embedded runtime) records that it is alive
    #: in the store's ``workers`` collection (the console's "workers seen recently").
    heartbeat_interval: float = 5.0

    def retry_delay(self, attempt: int) -> float:
        """Seconds before retrying a delivery whose ``attempt``-th run failed
        transiently: ``retry_backoff`` doubled each attempt, at most 300 s. The one
        back-off, used by the runtime's retries and by the Celery bus's."""
        return float(min(self.retry_backoff * 2 ** max(attempt - 1, 0), MAX_RETRY_DELAY))

    def limits(self) -> dict[str, float]:
        """``time_limits`` as {actor: seconds}; ConfigError naming what is malformed."""
        limits: dict[str, float] = {}
        for item in (part.strip() for part in self.time_limits.split(",")):
            if not item:
                continue
            alias, sep, value = (text.strip() for text in item.partition("="))
            try:
                seconds = float(value) if sep and alias else -1.0
            except ValueError:
                seconds = -1.0
            if not seconds >= 0:  # also refuses NaN
                raise ConfigError(
                    f"setting bus.time_limits: {item!r} is not <actor>=<seconds>",
                    setting="bus.time_limits",
                )
            limits[alias] = seconds
        return limits

    def time_limit_for(self, alias: str) -> float:
        """The time limit (s) of actor ``alias``; 0 means none."""
        return self.limits().get(alias, self.time_limit)


@dataclass(frozen=True)
class StorageSettings:
    """Where jobs write their outputs (archive paths are relative to root)."""

    #: Local directory that archive paths live under. Empty: ``<data_dir>/archive``.
    root: str = ""
    #: Name of this storage system, part of every file record's identity.
    system: str = "data-sd2e-community"


@dataclass(frozen=True)
class LauncherSettings:
    """How the launcher-proxy starts compute."""

    #: ``auto`` (by what the job is: see common/launchers), or always one of
    #: ``inline``, ``local``, ``docker``, ``callback``.
    backend: str = "auto"
    #: How compute backends reach the gateway for their status callbacks.
    #: Empty: ``http://<gateway.host>:<gateway.port>``.
    public_url: str = ""
    #: Where the stdout/stderr of local, docker and Slurm jobs are kept (``GET
    #: /jobs/<uuid>/log``).
    #: Empty: ``<data_dir>/logs``. Must be shared by workers and gateways.
    log_dir: str = ""
    #: Uses of the nonce in a local, docker or Slurm job's callback URL.
    callback_nonce_uses: int = 10
    #: Seconds the nonce of a callback job's URL stays valid (its uses are unlimited).
    callback_nonce_ttl: int = 604800
    #: The Docker engine the docker launcher talks to.
    docker_url: str = "unix:///var/run/docker.sock"
    #: Who a job's container runs as. Empty: the uid:gid of the worker that launches
    #: it, so what the job writes in its archive belongs to the service (which indexes,
    #: moves and deletes it); ``image``: the image's own USER (root for many images:
    #: root-owned files); anything else is passed to Docker (``1000:1000``, a name).
    docker_user: str = ""
    #: The backends this deployment runs jobs on, comma-separated. Empty: inline, local,
    #: docker, callback in the embedded mode; ``inline, docker, callback`` in production
    #: (``local`` runs jobs on the worker's own machine, as its user: it is for the
    #: embedded mode). ``slurm`` only when listed.
    backends: str = ""
    #: Who the local launcher runs jobs as. Empty: the worker's own user, but never
    #: root (a root worker refuses local jobs) — in the embedded mode, whoever started
    #: it, root included. A user name or uid (``nobody``): a root worker drops to that
    #: user for each job. ``root``: root is allowed.
    run_as: str = ""
    #: The Slurm backend (common/adapters/launchers/slurm.py). Where Slurm's commands
    #: (sbatch, squeue, scontrol, scancel) are; empty: found on the PATH.
    slurm_bin: str = ""
    #: The slurm.conf those commands read (``SLURM_CONF``); empty: Slurm's own default.
    slurm_conf: str = ""
    #: Defaults for a job whose launch (``batchQueue``) and pipeline component say
    #: nothing: the partition (empty: the cluster's default), account and QOS.
    slurm_partition: str = ""
    slurm_account: str = ""
    slurm_qos: str = ""
    #: Seconds a Slurm command may take before it counts as Slurm being unreachable.
    slurm_timeout: float = 30.0
    #: Seconds after a batch job ended by itself (its script ran to the end) before the
    #: reconciler records its end from Slurm's state, if the script's own report has
    #: not arrived: the script reports first, this only catches a report that was lost.
    slurm_report_grace: float = 60.0


@dataclass(frozen=True)
class IndexerSettings:
    """How the jobs-indexer works through an archive path."""

    #: Most filters one index request may carry; more are refused at submit. Each
    #: filter is tried on every file, so this bounds the work one request can ask for.
    max_filters: int = 100
    #: File records upserted per store write.
    batch_size: int = 500
    #: At most one progress write on the execution (files seen / indexed / total) per
    #: this many seconds, plus a last one at the end; 0: one per batch.
    progress_interval: float = 1.0


@dataclass(frozen=True)
class BulkSettings:
    """Bulk actions (the jobs-manager's ``bulk`` message; README: Bulk actions)."""

    #: Most jobs one bulk action by a non-admin key may act on (more: admins only).
    user_limit: int = 100
    #: Most jobs one bulk action may act on, whoever sends it: a larger batch is
    #: split by narrowing the filter (by run, pipeline, state, tag or date).
    max_jobs: int = 10000


@dataclass(frozen=True)
class ReconcilerSettings:
    """Deadlines and heartbeats (issue 16; README: Deadlines and heartbeats)."""

    #: Seconds between two passes of every worker's reconciler (jittered down to 3/4 of
    #: it); 0 turns it off. A job is failed at most this long after it became overdue.
    interval: float = 30.0
    #: The deadline (s) of jobs whose launch and pipeline set none; 0: none.
    deadline: float = 0.0
    #: The heartbeat_timeout (s) of jobs whose launch and pipeline set none; 0: none.
    heartbeat_timeout: float = 0.0
    #: Most overdue jobs of each kind one pass fails (the rest wait for the next).
    batch: int = 500


@dataclass(frozen=True)
class WebhookSettings:
    """Webhook deliveries (issue 16; README: Webhooks)."""

    #: Whether subscriptions may point at private, loopback or reserved addresses:
    #: ``auto`` allows them in the embedded mode (a laptop's own receiver) and refuses
    #: them in production (SSRF: a webhook must not reach the service's own network).
    allow_private: str = "auto"
    #: Seconds to connect and to wait for the answer of one delivery.
    timeout: float = 5.0
    #: Consecutive failed deliveries after which a subscription is disabled.
    max_failures: int = 20
    #: How long (s) one event is retried before the subscription is disabled.
    retry_for: float = 86400.0
    #: First retry's delay (s), doubled each time up to ``retry_cap``.
    retry_base: float = 10.0
    retry_cap: float = 3600.0
    #: How long (s) each process trusts its copy of the enabled subscriptions when
    #: deciding whether an applied event concerns any (a new one is heard of this late).
    cache_seconds: float = 2.0
    #: How long (s) each process gathers the applied events subscriptions want before
    #: sending the notifier one message for them all; 0: one message per event.
    notice_window: float = 0.25


@dataclass(frozen=True)
class GatewaySettings:
    """The HTTP gateway."""

    host: str = "127.0.0.1"
    port: int = 8000
    #: Largest request body accepted, in bytes (larger: 413).
    max_body: int = 1048576
    #: Longest a ``?_abaco_synchronous=true`` request waits for its execution (s).
    sync_timeout: float = 30.0
    #: Page size of list endpoints when ``limit`` is not given, and the largest allowed.
    page_size: int = 50
    max_page_size: int = 500
    #: Worker threads of the embedded server (``pipelinejobs serve``).
    threads: int = 8
    #: Deepest nesting of a JSON body (``{}`` is 1); deeper: 400 naming the path.
    max_depth: int = 64
    #: How long (s) an ``Idempotency-Key`` names the execution it first created: a POST
    #: repeated with the same key within this time returns that execution.
    idempotency_ttl: float = 86400.0
    #: How long (s) a console sign-in lasts (its server-side session); then sign in again.
    session_ttl: float = 43200.0
    #: The gateway's public base URL (``https://api.example.org``, optionally with a
    #: path prefix): what a job's ``agent`` and ``task`` URLs start with. Empty: the
    #: URL each request came in on (its scheme and host), through a proxy only as
    #: ``gateway.trusted_proxies`` allows.
    public_url: str = ""
    #: Addresses or networks (``10.0.0.5, 10.1.0.0/16``) of the reverse proxies whose
    #: ``X-Forwarded-Proto`` / ``X-Forwarded-Host`` the gateway believes when it takes
    #: a public URL from a request. Empty (the default): never believed.
    trusted_proxies: str = ""
    #: How often (s) the console's live parts (a job's page, the jobs list) ask for changes.
    console_poll: float = 2.0


@dataclass(frozen=True)
class MetricsSettings:
    """Prometheus metrics at ``/metrics`` (README: Metrics)."""

    #: Where the processes of this machine (gateway workers, worker pool processes)
    #: keep their counters for ``/metrics`` to add up (prometheus_client's
    #: multi-process mode). Empty: $PROMETHEUS_MULTIPROC_DIR when set, else
    #: ``<data_dir>/metrics``. Emptied when the first process of the machine starts.
    dir: str = ""
    #: Whether ``/metrics`` needs a bearer key (any role). Off by default: scrapers
    #: rarely carry one, and the page holds only counts (no job data, no ids).
    require_key: bool = False
    #: How long (s) a gateway process reuses what it read from the store and the
    #: broker for ``/metrics`` (jobs per state, queue depths, workers seen).
    cache_ttl: float = 5.0


@dataclass(frozen=True)
class LoggingSettings:
    """The process log of ``serve``, ``gateway`` and ``worker`` (stderr; README: Logs)."""

    #: ``human`` (one timestamped line per record) or ``json`` (one JSON object per line).
    format: str = "human"
    #: DEBUG, INFO, WARNING or ERROR. INFO: a line per HTTP request and per execution.
    level: str = "INFO"


@dataclass(frozen=True)
class Config:
    """Every setting, by section. Build one with :func:`load_config`."""

    system: SystemSettings = field(default_factory=SystemSettings)
    identifiers: IdentifierSettings = field(default_factory=IdentifierSettings)
    tokens: TokenSettings = field(default_factory=TokenSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    bus: BusSettings = field(default_factory=BusSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    launcher: LauncherSettings = field(default_factory=LauncherSettings)
    indexer: IndexerSettings = field(default_factory=IndexerSettings)
    bulk: BulkSettings = field(default_factory=BulkSettings)
    reconciler: ReconcilerSettings = field(default_factory=ReconcilerSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)

    @property
    def webhooks_allow_private(self) -> bool:
        """``webhooks.allow_private`` resolved: ``auto`` is true only when embedded."""
        if self.webhooks.allow_private == "auto":
            return self.system.mode == "embedded"
        return self.webhooks.allow_private == "true"

    @property
    def broker_url(self) -> str:
        if self.bus.broker_url:
            return self.bus.broker_url
        return (
            "memory://localhost/" if self.system.mode == "embedded" else "redis://127.0.0.1:6379/0"
        )

    @property
    def allowed_backends(self) -> tuple[str, ...]:
        """The launcher backends this deployment runs jobs on (``launcher.backends``)."""
        listed = [name.strip() for name in self.launcher.backends.split(",") if name.strip()]
        if listed:
            return tuple(dict.fromkeys(listed))
        return EMBEDDED_BACKENDS if self.system.mode == "embedded" else PRODUCTION_BACKENDS

    @property
    def run_as(self) -> str:
        """``launcher.run_as`` as the local launcher reads it: empty in the embedded
        mode means whoever started it, root included — which is what ``root`` says."""
        if self.launcher.run_as.strip() or self.system.mode != "embedded":
            return self.launcher.run_as.strip()
        return "root"

    @property
    def public_url(self) -> str:
        url = self.launcher.public_url or f"http://{self.gateway.host}:{self.gateway.port}"
        return url.rstrip("/")

    @property
    def trusted_proxies(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """``gateway.trusted_proxies`` as networks (an address is a network of one)."""
        out = []
        for item in self.gateway.trusted_proxies.split(","):
            if not item.strip():
                continue
            try:
                out.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError as exc:
                raise ConfigError(
                    f"setting gateway.trusted_proxies: {item.strip()!r} is not an IP "
                    f"address or network ({exc})",
                    setting="gateway.trusted_proxies",
                ) from exc
        return tuple(out)

    @property
    def log_dir(self) -> Path:
        if self.launcher.log_dir:
            return Path(self.launcher.log_dir).expanduser()
        return self.data_dir / "logs"

    @property
    def storage_root(self) -> Path:
        if self.storage.root:
            return Path(self.storage.root).expanduser()
        return self.data_dir / "archive"

    @property
    def data_dir(self) -> Path:
        return Path(self.system.data_dir).expanduser()

    @property
    def sqlite_path(self) -> Path:
        if self.store.sqlite_path:
            return Path(self.store.sqlite_path).expanduser()
        return self.data_dir / "pipelinejobs.sqlite3"

    def replace(self, section: str, **values: Any) -> Config:
        """A copy with some settings of one section changed (for tests and flags)."""
        return _merge(self, {section: values}, source="override")


def _coerce(value: Any, kind: type, name: str, source: str) -> Any:
    """Turn a YAML or environment value into the declared type, or say why not."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in BOOLEAN_WORDS:
            return BOOLEAN_WORDS[text]
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        try:
            return float(str(value))
        except ValueError:
            pass
    elif kind is str:
        if value is None:
            return ""
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
    raise ConfigError(
        f"setting {name} from {source}: {value!r} is not a valid {kind.__name__}",
        setting=name,
        source=source,
    )


_TYPES = {"str": str, "int": int, "float": float, "bool": bool}


def _merge(config: Config, values: Mapping[str, Any], source: str) -> Config:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    sections = {f.name: f for f in dataclasses.fields(config)}
    changes: dict[str, Any] = {}
    for section, settings in values.items():
        if section not in sections:
            raise ConfigError(
                f"{source}: unknown section '{section}'; known: {', '.join(sections)}",
                setting=section,
                source=source,
            )
        if settings is None:
            continue
        if not isinstance(settings, Mapping):
            raise ConfigError(
                f"{source}: section '{section}' must be a mapping", setting=section, source=source
            )
        current = getattr(config, section)
        keys = {f.name: f for f in dataclasses.fields(current)}
        updates = {}
        for key, value in settings.items():
            if key not in keys:
                raise ConfigError(
                    f"{source}: unknown setting '{section}.{key}'; known in "
                    f"'{section}': {', '.join(keys)}",
                    setting=f"{section}.{key}",
                    source=source,
                )
            kind = _TYPES[str(keys[key].type)]
            updates[key] = _coerce(value, kind, f"{section}.{key}", source)
        changes[section] = dataclasses.replace(current, **updates)
    return dataclasses.replace(config, **changes)


def env_name(section: str, key: str) -> str:
    """The environment variable that overrides ``section.key``."""
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


def _from_env(config: Config, env: Mapping[str, str]) -> Config:
    values: dict[str, dict[str, str]] = {}
    for section in dataclasses.fields(config):
        for key in dataclasses.fields(getattr(config, section.name)):
            name = env_name(section.name, key.name)
            if name in env:
                values.setdefault(section.name, {})[key.name] = env[name]
    return _merge(config, values, source="environment") if values else config


def _config_path(path: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path | None:
    if path is not None:
        return Path(path)
    if env.get(ENV_PREFIX + "CONFIG"):
        return Path(env[ENV_PREFIX + "CONFIG"])
    default = Path("config.yml")
    return default if default.is_file() else None


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Build the configuration by the precedence in this module's docstring."""
    env = os.environ if env is None else env
    config = Config()
    file = _config_path(path, env)
    if file is not None:
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {file} is not valid YAML: {exc}") from exc
        config = _merge(config, loaded, source=str(file))
    config = _from_env(config, env)
    if overrides:
        config = _merge(config, overrides, source="command line")
    _check(config)
    return config


_CHOICES = {
    ("system", "mode"): ("embedded", "production"),
    ("store", "backend"): ("sqlite", "mongodb", "memory"),
    ("launcher", "backend"): ("auto", *LAUNCHER_BACKENDS),
    ("logging", "format"): LOG_FORMATS,
    ("webhooks", "allow_private"): ("auto", "true", "false"),
}


def _check(config: Config) -> None:
    for (section, key), allowed in _CHOICES.items():
        value = getattr(getattr(config, section), key)
        if value not in allowed:
            raise ConfigError(
                f"setting {section}.{key} is {value!r}; allowed: {', '.join(allowed)}",
                setting=f"{section}.{key}",
                allowed=list(allowed),
            )
    unknown = [name for name in config.allowed_backends if name not in LAUNCHER_BACKENDS]
    if unknown:
        raise ConfigError(
            f"setting launcher.backends names {', '.join(unknown)}; backends: "
            f"{', '.join(LAUNCHER_BACKENDS)}",
            setting="launcher.backends",
            allowed=list(LAUNCHER_BACKENDS),
        )
    if config.launcher.backend not in ("auto", *config.allowed_backends):
        raise ConfigError(
            f"setting launcher.backend is {config.launcher.backend!r}, which launcher.backends "
            f"does not allow ({', '.join(config.allowed_backends)})",
            setting="launcher.backend",
            allowed=["auto", *config.allowed_backends],
        )
    if not 0 < config.system.switch_interval <= 1:
        raise ConfigError(
            "setting system.switch_interval must be more than 0 and at most 1 (seconds), "
            f"not {config.system.switch_interval!r}",
            setting="system.switch_interval",
        )
    for key in ("user_limit", "max_jobs"):
        if getattr(config.bulk, key) <= 0:
            raise ConfigError(
                f"setting bulk.{key} must be a positive integer", setting=f"bulk.{key}"
            )
    for key in ("max_filters", "batch_size"):
        if getattr(config.indexer, key) <= 0:
            raise ConfigError(
                f"setting indexer.{key} must be a positive integer", setting=f"indexer.{key}"
            )
    if config.logging.level.upper() not in LOG_LEVELS:
        raise ConfigError(
            f"setting logging.level is {config.logging.level!r}; allowed: {', '.join(LOG_LEVELS)}",
            setting="logging.level",
            allowed=list(LOG_LEVELS),
        )
    if not config.indexer.progress_interval >= 0:
        raise ConfigError(
            "setting indexer.progress_interval must be 0 or more seconds",
            setting="indexer.progress_interval",
        )
    config.bus.limits()  # refuses a malformed bus.time_limits
    _ = config.trusted_proxies  # refuses a malformed gateway.trusted_proxies
    if config.gateway.public_url and not PUBLIC_URL.fullmatch(config.gateway.public_url):
        raise ConfigError(
            f"setting gateway.public_url is {config.gateway.public_url!r}; it must be an "
            f"http(s) URL with a host and no query, such as https://api.example.org",
            setting="gateway.public_url",
        )
    for key in ("time_limit", "time_limit_grace", "check_interval", "lost_after", "priority_age"):
        if not getattr(config.bus, key) >= 0:
            raise ConfigError(f"setting bus.{key} must be 0 or more seconds", setting=f"bus.{key}")
    if config.tokens.admin_token_ttl <= 0:
        raise ConfigError(
            "setting tokens.admin_token_ttl must be a positive number of seconds",
            setting="tokens.admin_token_ttl",
        )
