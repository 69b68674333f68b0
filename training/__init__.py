"""Training jobs: cohort simulator, training, evaluation, MLflow registry (imports models/)."""
