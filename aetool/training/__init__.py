"""`aetool train`: fit the models on a user's own images."""
