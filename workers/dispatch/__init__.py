"""Dispatch: the beat tick that claims due destinations and enqueues dial chunks within the budgets."""
