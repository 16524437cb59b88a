"""Re-export of campaigns.accounts for engine modules not yet pointed at it (issue 8: the engine half
changes its imports on merge, then this module goes)."""

from campaigns.accounts import AccountLimits, account_from_row, add_account, load_account

__all__ = ["AccountLimits", "account_from_row", "add_account", "load_account"]
