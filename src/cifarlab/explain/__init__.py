"""Explaining a trained model: test-split evaluation, which mistakes to show, and GradCAM."""
