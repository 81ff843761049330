"""Pathology synthesis in the VAE's latent space (pure stages over arrays and loaded models)."""
