def test_engine_opens_on_both_backends(engine):
    engine.accounts.add("a1", "paper")
    assert [a.name for a in engine.accounts.list()] == ["a1"]
