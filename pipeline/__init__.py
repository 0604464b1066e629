"""Domain logic: config, ingest, redaction, labels, datasets, base model, train, evaluate, registry."""
