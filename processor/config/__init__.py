"""Configuration: the environment (pydantic-settings, prefix SENDGUARD_) and the policy file."""
