"""`cifarlab requeue`: queue again the experiments whose queue worker was killed mid-run
(a closed laptop lid, the out-of-memory killer, a reboot, `kill -9`).

DVC takes a task off its queue when a worker starts it and only marks it done when the worker
reports back, so a killed worker leaves the task listed as Running for good, showing the
metrics of its last finished epoch, and no later `dvc queue start` runs it. This finds those tasks
(not done, no live worker running them, their process gone), puts the same stashed experiment
(same code, params and name) back on the queue and forgets the dead task and its temporary copy,
so the next `dvc queue start` runs it again from the start. Queued, running and finished
experiments are left as they are. DVC has no public call for this, so it uses DVC's local queue
(LocalCeleryQueue) from inside; tests/test_queue_kills.py runs it end to end on the installed DVC."""
from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from cifarlab.core.errors import refuse, run_command


@dataclass(frozen=True)
class Orphan:
    """A started task whose worker and process are gone: its queue message and what DVC stashed."""

    message: object
    entry: object
    kwargs: dict


def orphans(queue) -> list[Orphan]:
    """The started tasks of DVC's local queue that nothing will ever finish."""
    import psutil

    running = queue._get_running_task_ids()  # asks the live workers, if any
    found = []
    for message, entry in queue._iter_processed():
        task_id = message.headers["id"]
        if task_id in running or queue.celery.AsyncResult(task_id).ready():
            continue
        process = queue.proc.get(entry.stash_rev)
        if process is not None and process.returncode is None and psutil.pid_exists(process.pid):
            continue  # its worker died but the experiment still runs
        _args, kwargs, _embed = message.decode()
        found.append(Orphan(message, entry, kwargs))
    return found


def requeue(queue, orphan: Orphan) -> None:
    """Stash the orphan's experiment commit again and send a new task for it, exactly as `dvc exp
    run --queue` does for a new one, then drop the dead task, its process record and its copy."""
    from dvc.repo.experiments.queue.tasks import run_exp

    entry = orphan.entry
    if entry.stash_rev not in queue.stash.stash_revs:  # an earlier, interrupted requeue may have done it
        message = queue.stash.format_message(entry.head_rev, entry.baseline_rev, name=entry.name, branch=entry.branch)
        queue.scm.set_ref(queue.stash.ref, entry.stash_rev, message=f"commit: {message}")
        queue.celery.signature(run_exp.s(entry.asdict(), copy_paths=orphan.kwargs.get("copy_paths"),
                                         message=orphan.kwargs.get("message"))).delay()
    queue.celery.purge(orphan.message.delivery_tag)  # the dead task never stored a result to forget
    _remove_copy(queue, entry.stash_rev)
    del queue.proc[entry.stash_rev]


def _remove_copy(queue, stash_rev: str) -> None:
    """The dead run's temporary copy of the project under .dvc/tmp/exps/, if it got that far."""
    from dvc.repo.experiments.executor.base import ExecutorInfo

    try:
        root = Path(ExecutorInfo.load_json(queue.get_infofile_path(stash_rev)).root_dir).resolve()
    except (FileNotFoundError, KeyError, ValueError):
        return
    if Path(queue.repo.tmp_dir).resolve() not in root.parents:
        return
    _stop_leftovers(root)
    shutil.rmtree(root, ignore_errors=True)


def _is_pipeline(process, copy: Path) -> bool:
    """Whether `process` is DVC's or one of the copy's stage scripts (python stages/<stage>.py):
    what a dead run leaves behind. A shell or an editor a user opened there is neither."""
    command = process.cmdline()
    if not command:
        return False
    program = Path(command[0]).name
    if program in ("dvc", "dvc.exe") or command[1:3] == ["-m", "dvc"]:
        return True
    return any(arg.endswith(".py") and Path(arg).parent.name == "stages"
               and (copy / "stages" / Path(arg).name).is_file() for arg in command[1:])


def _stop_leftovers(copy: Path) -> None:
    """A stage process can outlive a killed worker and train on in the dead copy, where nothing
    will ever collect its results: stop it and its children (data-parallel workers) with SIGTERM,
    so it unwinds cleanly, before the rerun. Only DVC's and the stages' processes: a user's shell
    in the copy is left alone."""
    import psutil

    leftovers = {}
    for process in psutil.process_iter():
        try:
            if Path(process.cwd()).resolve().is_relative_to(copy) and _is_pipeline(process, copy):
                for found in (process, *process.children(recursive=True)):
                    leftovers[found.pid] = found
        except (psutil.Error, OSError):  # gone meanwhile, or not ours to inspect
            continue
    for process in leftovers.values():
        try:
            process.terminate()
        except psutil.Error:
            continue
    _gone, alive = psutil.wait_procs(list(leftovers.values()), timeout=10)
    for process in alive:
        process.kill()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cifarlab requeue", description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo
    from dvc.scm import NoSCMError

    try:
        repo = Repo(".")
    except NotDvcRepoError:
        refuse("run this in the project folder (no DVC project here)")
    with repo:
        try:
            queue = repo.experiments.celery_queue
        except NoSCMError:
            refuse("this DVC project is not in a git repository, and DVC queues experiments only in one "
                   "(`git init`, then commit the project)")
        found = orphans(queue)
        for orphan in found:
            requeue(queue, orphan)
            print(f"queued again: {orphan.entry.name or orphan.entry.stash_rev[:7]} (its worker was killed mid-run)")
    if found:
        print("run `dvc queue start` to run it again" if len(found) == 1 else "run `dvc queue start` to run them again")
    else:
        print("nothing to queue again: no started experiment lost its worker")


if __name__ == "__main__":
    sys.exit(run_command(main))
