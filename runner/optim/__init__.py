"""Optimizers and learning-rate schedules that torch does not ship (Muon for conv nets, M-FAC,
multi-budget WSD plans); each is a config choice (`optimizer=...`, `schedule=...`) for any experiment."""
