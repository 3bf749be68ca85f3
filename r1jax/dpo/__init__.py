"""DPO: preference pairs, the loss against a frozen reference, and its train step (the library);
the job lives in `r1jax/jobs/dpo.py`."""
