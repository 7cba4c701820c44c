"""Validation examples of the invariant VAEs away from optoacoustics (Colored MNIST)."""
