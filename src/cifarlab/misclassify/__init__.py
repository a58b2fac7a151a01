"""The misclassify stage: which of the model's mistakes to show, reproducibly."""
