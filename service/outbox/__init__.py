"""Push of worklist items to DIPS through a transactional outbox.

writer: an ItemListener that turns an item event into a FHIR transaction Bundle and stores it in
the outbox table inside the assessment's transaction. store: claiming, marking and counting
entries (PostgreSQL: SELECT ... FOR UPDATE SKIP LOCKED; SQLite: the same statements, serialised
by its single writer). sender: the background job that delivers entries with retries and backoff,
in order per patient.
"""
