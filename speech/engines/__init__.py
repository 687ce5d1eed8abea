"""Speech engines: one file per engine, the interfaces in ``base``, built once per process by ``factory``."""
