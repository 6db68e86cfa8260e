"""Kaggle: notebook settings, job guard, dataset/kernel metadata, bundle, API client, rehearsal."""
