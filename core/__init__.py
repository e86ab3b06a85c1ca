"""The shared base below every app: errors, scoping, logs, counters, the API error shape."""
