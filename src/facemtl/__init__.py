"""Multitask learning for facial attributes: data preparation, models, training and evaluation."""
