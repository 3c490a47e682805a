"""Drives one task through its life with a client generated from the served /openapi.json.

    PYTHONPATH=<dir holding todo_client> python client_test.py BASE_URL TOKEN

Every step checks the typed result the generated client returns, so a document that
declares a shape the server does not serve (or the reverse) fails here.
"""

import datetime as dt
import sys

from todo_client import AuthenticatedClient
from todo_client.api.tasks import (
    complete_task,
    create_task,
    delete_task,
    get_task,
    list_tasks,
    update_task,
)
from todo_client.models import (
    CompleteRequest,
    Frequency,
    ListTasksStatus,
    NewTaskRequest,
    Priority,
    Problem,
    RecurrenceRequest,
    Task,
    TaskPage,
    TaskUpdateRequest,
)

passed = failed = 0


def check(name, condition, detail=""):
    global passed, failed
    if condition:
        passed += 1
        print(f"PASS {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def main(base, token):
    client = AuthenticatedClient(base_url=base, token=token, raise_on_unexpected_status=True)
    due = dt.datetime(2031, 1, 31, 9, 0, tzinfo=dt.timezone.utc)

    created = create_task.sync_detailed(
        "alice",
        client=client,
        body=NewTaskRequest(
            title="  Pay rent  ",
            due_at=due,
            priority=Priority.HIGH,
            tags=["Home", "money"],
            recurrence=RecurrenceRequest(frequency=Frequency.MONTHLY, interval=1),
        ),
    )
    task = created.parsed
    check("create answers 201 with a Task", created.status_code == 201 and isinstance(task, Task), created.content)
    check("title trimmed, tags lower-cased", task.title == "Pay rent" and task.tags == ["home", "money"])
    check("due_at comes back as an aware datetime", isinstance(task.due_at, dt.datetime) and task.due_at == due, repr(task.due_at))
    check("created_at is a datetime", isinstance(task.created_at, dt.datetime) and task.created_at.tzinfo is not None)
    check("Location names the task", created.headers.get("location", "").endswith(f"/api/alice/tasks/{task.id}"))
    check("ETag is the version", created.headers.get("etag") == '"1"', created.headers.get("etag"))

    page = list_tasks.sync("alice", client=client, status=ListTasksStatus.PENDING, tag=["home"])
    check("list finds it", isinstance(page, TaskPage) and [t.id for t in page.items] == [task.id] and page.next_cursor is None)

    got = get_task.sync("alice", task.id, client=client)
    check("get returns the same task", isinstance(got, Task) and got.to_dict() == task.to_dict())

    updated = update_task.sync_detailed(
        "alice", task.id, client=client, if_match='"1"',
        body=TaskUpdateRequest(title="Pay the rent", description=None),
    )
    check("update with If-Match gives version 2", updated.status_code == 200 and updated.parsed.version == 2, updated.content)
    check("update's ETag follows", updated.headers.get("etag") == '"2"')

    stale = update_task.sync_detailed("alice", task.id, client=client, if_match='"1"', body=TaskUpdateRequest(title="lost"))
    check("a stale If-Match is a typed 412 problem", stale.status_code == 412 and isinstance(stale.parsed, Problem), stale.content)

    toggled = complete_task.sync("alice", task.id, client=client)
    check("complete without a body toggles", isinstance(toggled, Task) and toggled.completed and isinstance(toggled.completed_at, dt.datetime))
    reopened = complete_task.sync("alice", task.id, client=client, body=CompleteRequest(completed=False))
    check("complete with a body sets the state", isinstance(reopened, Task) and not reopened.completed and reopened.completed_at is None)

    invalid = create_task.sync_detailed(
        "alice", client=client,
        body=NewTaskRequest(title="   ", recurrence=RecurrenceRequest(frequency=Frequency.DAILY, interval=0)),
    )
    problem = invalid.parsed
    fields = sorted(e.field for e in problem.errors) if isinstance(problem, Problem) and problem.errors else []
    check("a 422 comes back as a typed Problem naming the fields", invalid.status_code == 422 and isinstance(problem, Problem) and fields == ["recurrence.interval", "title"], invalid.content)
    check("the problem's type is a URN", isinstance(problem, Problem) and problem.type_ == "urn:todo:problem:validation-error")

    deleted = delete_task.sync_detailed("alice", task.id, client=client, if_match='"4"')
    check("delete answers 204", deleted.status_code == 204, deleted.content)
    gone = get_task.sync_detailed("alice", task.id, client=client)
    check("then the task is a typed 404", gone.status_code == 404 and isinstance(gone.parsed, Problem))

    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
