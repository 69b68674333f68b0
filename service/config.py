"""Settings: one class, environment variables with the TRIAGE_ prefix, built once and passed in."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.artifact import SHIPPED_ARTIFACT_DIR


class Settings(BaseSettings):
    """Service configuration. Every field reads from ``TRIAGE_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="TRIAGE_", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    """`production` refuses development auth and default secrets."""
    var_dir: Path = Path("var")
    """Where the SQLite database, dev signing key, reports and MLflow store live."""
    database_url: str | None = None
    """SQLAlchemy URL; default: SQLite (WAL) at var/triage.db. PostgreSQL: postgresql+psycopg://…"""
    model_dir: Path = SHIPPED_ARTIFACT_DIR
    """Artifact folder loaded when no MLflow tracking URI is configured."""
    mlflow_tracking_uri: str | None = Field(default=None)
    """When set, the service loads models:/<model_name>@champion from this registry."""
    model_name: str = "home-followup-deterioration"
    """Registered model name in MLflow."""
    onnx_intra_op_threads: int = 1
    """onnxruntime threads per worker: one, so N workers use N cores without contention."""

    auth_mode: Literal["dev", "oidc"] = "dev"
    """`dev`: a local issuer with its own key pair; `oidc`: a real issuer such as HelseID."""
    oidc_issuer: str | None = None
    """Expected `iss`, e.g. https://helseid-sts.nhn.no."""
    oidc_audience: str = "home-followup-triage"
    """Expected `aud` (the API resource name registered in HelseID)."""
    oidc_jwks_url: str | None = None
    """JWKS endpoint of the issuer; keys are cached and refreshed on an unknown kid."""
    oidc_client_id: str | None = None
    """The web pages' OIDC client id (authorization code flow with PKCE) at the issuer."""
    oidc_client_secret: str | None = None
    """Its client secret, where the issuer uses one (HelseID wants private_key_jwt instead)."""
    oidc_web_scope: str = "openid profile"
    """Scopes the web sign-in asks for, besides the role scope."""
    oidc_clock_skew_s: int = 30
    """Tolerance for exp/nbf between our clock and the issuer's."""
    public_metrics: bool = True
    """Serve /metrics without a token (scraped inside the hospital network)."""

    max_body_bytes: int = 8 * 1024 * 1024
    """Larger request bodies are refused with 413 before they are parsed."""
    max_json_depth: int = 32
    """Deeper JSON is refused with 400 (FHIR resources nest far less)."""
    scoring_enabled: bool = True
    """Score on every ingestion (off only for bulk backfills)."""

    inference_url: str | None = None
    """Base URL of an external Open Inference Protocol (KServe V2) endpoint, e.g. Triton serving
    `triage export-triton`'s repository; unset: the model runs in-process with onnxruntime."""
    inference_token: str | None = None
    """Bearer token for the external inference endpoint, if it asks for one."""
    inference_timeout_s: float = 2.0
    """Timeout of one call to the external inference endpoint; past it the request answers 503."""
    in_process_jobs: bool = True
    """Run the scheduled jobs (re-scoring, drift reports) inside the serving process. Set false
    where Kubernetes CronJobs run them instead (deploy/k8s/cronjobs.yaml: `triage rescore`,
    `triage drift run`, `triage audit retention`)."""
    rescore_schedule_hours: float = 6.0
    """How often every patient is re-scored as of the wall clock (catches silent patients); 0
    disables."""
    questionnaire_dispatch_minutes: float = 5.0
    """How often due questionnaires are sent to patients as Tasks, answered ones completed and
    overdue ones marked missed (service/domain/questionnaire_tasks.py); 0 disables."""
    drift_schedule_hours: float = 24.0
    """How often the built-in drift report job runs; 0 disables it."""
    drift_window_days: int = 7
    """The window of scored assessments a scheduled drift report looks at."""
    outbox_endpoint: str | None = None
    """FHIR base URL of DIPS to push worklist Tasks to; unset: the outbox only records."""
    outbox_poll_s: float = 2.0
    """How often the outbox sender looks for undelivered entries."""
    outbox_token_url: str | None = None
    """HelseID token endpoint for the outbox (client credentials with private_key_jwt); unset:
    DIPS is called without an Authorization header (development only)."""
    outbox_client_id: str | None = None
    """Our HelseID client id (the client assertion's iss and sub)."""
    outbox_client_key: str | None = None
    """Path of the PEM private key (RSA or EC) that signs the client assertion; its public half
    is registered with HelseID."""
    outbox_client_key_id: str | None = None
    """`kid` of that key in the JWKS registered with HelseID."""
    outbox_scope: str | None = None
    """Scope(s) requested for DIPS, space-separated."""
    cds_client_jwks: dict[str, str] = {}
    """CDS Hooks clients trusted with their own JWT (CDS Hooks 2.0 "Trusting CDS Clients"), as
    issuer -> JWKS URL, e.g. {"https://dips.example/cds": "https://dips.example/cds/jwks"}.
    Beside HelseID: a token from one of these issuers is accepted on the /cds-services routes."""
    cds_client_organisations: dict[str, str] = {}
    """The organisation (orgnr) each trusted CDS client acts for, by issuer."""
    cds_fhir_servers: list[str] = []
    """FHIR base URLs the CDS service may fetch from with a request's fhirAuthorization (when
    prefetch lacks the patient); any other fhirServer is not called (no fetch on the caller's
    say-so)."""
    session_secret: str = "dev-only-session-secret-change-me"  # noqa: S105 - refused in production
    """Signs web session cookies; must be set in production."""
    audit_checkpoint_key: str | None = None
    """Ed25519 private key (PEM, or the 32-byte seed in base64) that signs audit checkpoints;
    outside production one is made at var/audit-checkpoint-key.pem. The database administrator
    must not hold it."""
    audit_checkpoint_dir: Path | None = None
    """Folder of the append-only checkpoint file (checkpoints.jsonl); default var/audit. Put it
    where the database administrator cannot write (another volume, WORM storage)."""
    audit_checkpoint_minutes: float = 60.0
    """How often the in-process schedule signs the audit chain's head; 0 disables (the CronJob
    `triage audit checkpoint` does it where in_process_jobs is false)."""
    partition_schedule_hours: float = 24.0
    """PostgreSQL: how often the in-process schedule creates the coming months' partitions; 0
    disables (the CronJob `triage storage partitions` does it where in_process_jobs is false)."""
    log_json: bool = True
    """Structured JSON log lines (one object per line)."""
    export_pseudonym_secret: str = "dev-only-export-secret-change-me"  # noqa: S105 - see below
    """Keys the per-recipient pseudonyms and time shifts of bulk exports (HMAC-SHA256 over the
    recipient and the service's id). Keep it from every recipient; in production bulk exports are
    refused until it is set (the service itself still starts without it)."""
    export_k_anonymity: int = Field(default=5, ge=2)
    """A bulk export withholds every patient whose (age band, sex, unit, pathway) group holds
    fewer than this many patients in the export."""
    export_time_shift_max_days: int = Field(default=180, ge=1)
    """Each patient's times move by a secret whole number of days in ±this range (per recipient),
    so intervals inside one patient's record are kept and calendar dates are not."""

    @model_validator(mode="after")
    def refuse_unsafe_production(self) -> Settings:
        if self.environment == "production":
            problems = []
            if self.auth_mode == "dev":
                problems.append("TRIAGE_AUTH_MODE=dev (the development issuer) is not allowed")
            if not (self.oidc_issuer and self.oidc_jwks_url):
                problems.append("TRIAGE_OIDC_ISSUER and TRIAGE_OIDC_JWKS_URL must be set")
            if self.session_secret.startswith("dev-only"):
                problems.append("TRIAGE_SESSION_SECRET must be set to a secret value")
            if problems:
                raise ValueError("refusing to start in production: " + "; ".join(problems))
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.var_dir / 'triage.db').resolve()}"

    @property
    def dev_key_path(self) -> Path:
        return self.var_dir / "dev-signing-key.pem"

    @property
    def audit_checkpoint_dir_resolved(self) -> Path:
        return self.audit_checkpoint_dir or self.var_dir / "audit"

    @property
    def reports_dir(self) -> Path:
        return self.var_dir / "reports"
