"""Runtime: the Celery application, its tasks (thin shells over the wings) and their labels."""
