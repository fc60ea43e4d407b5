"""cli/rollout_wait: when the CLI stops waiting for a change, and whether it
ended well (what `service update` and `service rollback` exit with)."""
import io

from cli import rollout_wait


def view(version, status, state=None, rollout_version=None, current=0, reason=""):
    return {"name": "web", "version": version, "status": status, "replicas": {"desired": 4, "running": 4},
            "update": {"state": state, "version": rollout_version, "reason": reason, "slots": {"current": current}}}


def test_it_polls_until_the_rollout_settled():
    answers = iter([view(2, "converging", "updating", 2, 2), view(2, "running", "completed", 2, 4)])
    svc, done = rollout_wait.follow(lambda: next(answers), view(2, "converging", "updating", 2), 30, out=io.StringIO())
    assert done and svc["update"]["state"] == "completed"


def test_an_update_that_rolled_back_or_paused_is_a_failure_one_that_completed_is_not():
    started = view(2, "converging", "updating", 2)
    assert rollout_wait.failure(view(2, "running", "completed", 2, 4), started, True, 60) is None
    why = rollout_wait.failure(view(3, "running", "rolled back", 3, reason="slot 1: web.1.x turned unhealthy"),
                               started, True, 60)
    assert why == "the update of service web ended rolled back: slot 1: web.1.x turned unhealthy"
    assert "ended paused" in rollout_wait.failure(view(2, "paused", "paused", 2), started, True, 60)
    assert "still updating after 60s" in rollout_wait.failure(view(2, "converging", "updating", 2), started, False, 60)


def test_a_completed_update_of_a_crash_looping_service_is_not_failed_by_its_old_back_off():
    started = view(2, "failed", "updating", 2)
    assert rollout_wait.failure(view(2, "failed", "completed", 2, 4), started, True, 60) is None


def test_an_update_superseded_by_another_client_says_so():
    started = view(2, "converging", "updating", 2)
    assert "changed again meanwhile (now v3)" in rollout_wait.failure(view(3, "running", "completed", 3), started,
                                                                       True, 60)


def test_a_change_that_started_no_rollout_is_judged_by_the_service_alone():
    settings_only = view(5, "running", "rolled back", 3)          # an old rollout's state, not this change's
    assert rollout_wait.failure(settings_only, settings_only, True, 60) is None
    assert rollout_wait.failure(view(5, "failed", "completed", 3), settings_only, True, 60) == "service web failed"


def test_a_rollback_that_paused_is_a_failure():
    started = view(4, "converging", "rolling back", 4)
    assert rollout_wait.failure(view(4, "running", "rolled back", 4), started, True, 60) is None
    assert "the rollback of service web ended paused" in rollout_wait.failure(
        view(4, "paused", "paused", 4), started, True, 60)


def test_the_bar():
    assert rollout_wait.bar(view(2, "converging", "updating", 2, 2)) == \
        "web: updating [############------------] 2/4"


def test_the_options_body_takes_bare_numbers_as_seconds_and_keeps_a_stored_check():
    from cli.update_options import update_body
    chosen = {"update.parallelism": 2, "update.monitor": "1", "update.delay": "1m30s", "rollback.order": None,
              "healthcheck.interval": "2", "healthcheck.disable": False, "resources.limits.memory": "64m"}
    assert update_body(chosen, lambda: {"test": ["CMD-SHELL", "true"], "retries": 3}) == {
        "update": {"parallelism": 2, "monitor": 1.0, "delay": "1m30s"}, "resources": {"limits": {"memory": "64m"}},
        "healthcheck": {"test": ["CMD-SHELL", "true"], "retries": 3, "interval": 2.0}}
