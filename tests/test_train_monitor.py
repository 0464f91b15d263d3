from workbench.train_monitor import Monitor


def _monitor(**overrides):
    return Monitor(**({"spike_factor": 2.0, "spike_window": 5, "overfit_evals": 2, "patience": 3} | overrides))


def test_spike_is_reported_with_its_step_and_a_lower_learning_rate():
    monitor = _monitor()
    events = [
        e
        for step, loss in enumerate([1.0, 1.1, 0.9, 1.0, 1.0, 1.05], 1)
        for e in monitor.on_train_loss(step, loss, 1e-3)
    ]
    assert events == []
    (spike,) = monitor.on_train_loss(7, 2.5, 1e-3)
    assert spike.kind == "spike" and spike.step == 7
    assert "step 7" in spike.message and "lower the learning rate" in spike.message and "3.3e-04" in spike.message


def test_no_spike_before_the_window_fills():
    monitor = _monitor()
    assert monitor.on_train_loss(1, 1.0, 1e-3) == [] and monitor.on_train_loss(2, 50.0, 1e-3) == []


def test_overfitting_needs_val_rising_while_train_falls_and_is_reported_once():
    monitor = _monitor(patience=10)
    train, val = [3.0, 2.5, 2.0, 1.5, 1.0], [2.0, 1.8, 1.9, 2.0, 2.2]
    kinds = []
    for n, (t, v) in enumerate(zip(train, val), 1):
        monitor.on_train_loss(n, t, 1e-3)
        events, _, _ = monitor.on_eval(n, v)
        kinds.append([e.kind for e in events])
    assert kinds == [["best"], ["best"], [], ["overfit"], []]
    assert monitor.best_step == 2 and monitor.best_val == 1.8


def test_val_rising_with_train_rising_is_not_overfitting():
    monitor = _monitor(patience=10)
    for n, (t, v) in enumerate(zip([1.0, 1.2, 1.4, 1.6], [1.0, 1.1, 1.2, 1.3]), 1):
        monitor.on_train_loss(n, t, 1e-3)
        events, _, _ = monitor.on_eval(n, v)
        assert "overfit" not in [e.kind for e in events]


def test_early_stop_after_patience_evaluations_without_improvement():
    monitor = _monitor(patience=2)
    results = [monitor.on_eval(step, val) for step, val in [(10, 1.0), (20, 0.9), (30, 0.95), (40, 0.91)]]
    assert [stop for _, _, stop in results] == [False, False, False, True]
    assert [best for _, best, _ in results] == [True, True, False, False]
    assert results[-1][0][-1].kind == "early_stop" and "keeping step 20" in results[-1][0][-1].message
