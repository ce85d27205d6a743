"""Gateway webhooks received by paygate: verified, stored first, processed by a job.

- `providers/`: per gateway type, how a webhook is signed and verified, what its events
  mean, how paygate registers its URL with the provider, and the setup steps shown.
- `receive.py`: the receiving endpoint's service (verify, store, defer).
- `processing.py`: an event's notices applied through the one settle path.
- `replay.py`: replaying one event, and bulk replays of failed events.
- `registration.py`: "Register with the provider".
"""
