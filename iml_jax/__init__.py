"""iml-jax: implicit meta-learning experiments in JAX/Flax."""
