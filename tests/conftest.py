import os

from hypothesis import HealthCheck, settings

# A cold first trace or a future Numba compile can take seconds: no per-example deadline.
settings.register_profile("ci", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "thorough", deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("NNC_HYPOTHESIS_PROFILE", "ci"))
