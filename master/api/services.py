"""The routes of services: /service and /service/<name>.

A write is taken only by the leader, validated before anything is written,
committed through Desired, and then waits (bounded, ?wait=false to skip)
until the loop has acted on it.
"""
from master.api.http import read_body


def add_routes(route, desired, views, leadership, waits):
    def answer(service, created, wait, timeout):
        if not wait:
            return 202, views.service(service)
        done = waits.settled(service.name, service.version, timeout)
        current = desired.service(service.name) or service
        return (201 if created else 200) if done else 202, views.service(current)

    @route("/service")
    def list_services():
        return 200, views.services()

    @route("/service", "POST")
    def create():
        wait, timeout = waits.asked()
        leadership.require()
        service, created = desired.create(desired.new_service(read_body()))
        return answer(service, created, wait, timeout)

    @route("/service/<name>")
    def show(name):
        return 200, views.service(desired.existing(name))

    @route("/service/<name>", "PATCH")
    def patch(name):
        wait, timeout = waits.asked()
        leadership.require()
        current = desired.existing(name)
        return answer(desired.update(name, desired.changed_service(current, read_body())), False, wait, timeout)

    @route("/service/<name>/rollback", "POST")
    def rollback(name):
        wait, timeout = waits.asked()
        leadership.require()
        desired.existing(name)
        return answer(desired.rollback(name), False, wait, timeout)

    @route("/service/<name>", "DELETE")
    def delete(name):
        wait, timeout = waits.asked()
        leadership.require()
        desired.existing(name)
        service = desired.delete(name)
        if not wait:
            return 202, views.service(service)
        if waits.settled(name, service.version, timeout):
            return 200, {"message": f"service {name} deleted", "name": name}
        return 202, views.service(desired.service(name) or service)
