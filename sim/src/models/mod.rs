//! Physical behaviour models behind terminals: loop-backs, analog wiring, stepper motors, counters.
