"""Re-export of campaigns.secrets_box for engine modules not yet pointed at it (issue 8: the engine half
changes its imports on merge, then this module goes)."""

from campaigns.secrets_box import SecretUnreadable, encrypt

__all__ = ["SecretUnreadable", "encrypt"]
