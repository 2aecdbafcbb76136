"""Training: datasets built from the shared real data, derived labels, augmentation, train loops."""
