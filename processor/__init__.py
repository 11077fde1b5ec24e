"""sendguard: a streaming guard of email sender reputation (the service package)."""
