"""The kernel guard refuses and records out-of-bounds access, and cannot be switched off."""
import json
import subprocess
import sys
from pathlib import Path

import gmcourse.grading.kernel_guard as kernel_guard

STUDENT_CODE = r'''
import os, sys, json
sys.path.insert(0, {guard_dir!r})
from kernel_guard import install
install({log!r}, [{secret!r}], [{course!r}])
results = {{}}
def attempt(name, action):
    try:
        action()
        results[name] = "allowed"
    except PermissionError:
        results[name] = "refused"
attempt("read secret", lambda: open({secret_file!r}).read())
attempt("list secret", lambda: os.listdir({secret!r}))
attempt("read course", lambda: open({course_file!r}).read())
attempt("write course", lambda: open({course_file!r}, "a").write("x"))
attempt("read log", lambda: open({log!r}).read())
attempt("shell on secret", lambda: os.system("cat " + {secret_file!r}))
sys.addaudithook(lambda *a: None)  # adding hooks is allowed; removing ours is impossible
attempt("read secret again", lambda: open({secret_file!r}).read())
attempt("scratch write", lambda: open({scratch!r}, "w").write("fine"))
print(json.dumps(results))
'''


def test_guard_refuses_protected_paths_and_logs_each_attempt(tmp_path):
    secret, course = tmp_path / "solutions", tmp_path / "course"
    secret.mkdir()
    course.mkdir()
    (secret / "00.ipynb").write_text("answers")
    (course / "lib.py").write_text("x = 1")
    log = tmp_path / "guard.jsonl"
    code = STUDENT_CODE.format(guard_dir=str(Path(kernel_guard.__file__).parent), log=str(log),
                               secret=str(secret), course=str(course), secret_file=str(secret / "00.ipynb"),
                               course_file=str(course / "lib.py"), scratch=str(tmp_path / "scratch.txt"))
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60)
    results = json.loads(out.stdout.strip().splitlines()[-1])
    assert results == {"read secret": "refused", "list secret": "refused", "read course": "allowed",
                       "write course": "refused", "read log": "refused", "shell on secret": "refused",
                       "read secret again": "refused", "scratch write": "allowed"}
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["event"] for e in events] == ["open", "os.listdir", "open", "open", "os.system", "open"]
    assert (course / "lib.py").read_text() == "x = 1"
