"""Training and measuring (never imported by ``pic learn`` or ``pic watch``): datasets, personas, the
prior's training, the feature store and the evaluation protocol."""
