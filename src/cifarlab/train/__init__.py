"""Training: the loop, optimisers and schedules, the LR range test, resume, and the run that ties them."""
