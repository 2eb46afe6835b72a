"""The objects a writer process made at start-up are left out of later garbage
collections; garbage is collected as before."""

from __future__ import annotations

import json
import subprocess
import sys

# In a process of its own (freezing is for the whole process, and for good): garbage
# made before and after the freeze, then what the collector still tracks.
SCRIPT = """
import gc, json, sys, weakref
import h5py, numpy, redis
import nexus_writer_service.subscribers
from nexus_writer_service.data.opener import import_sources
from nexus_writer_service.tuning import freeze_startup_objects

sources = import_sources() if sys.argv[1:] == ["sources"] else ()

class Cycle:
    def __init__(self):
        self.me = self

before = weakref.ref(Cycle())
frozen = freeze_startup_objects()
tracked = len(gc.get_objects())
after = weakref.ref(Cycle())
gc.collect()
print(json.dumps({"frozen": frozen, "tracked": tracked, "before": before() is None,
                  "after": after() is None, "sources": sources,
                  "blissdata": "blissdata.redis_engine.store" in sys.modules}))
"""


def _freeze(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True,
                          text=True, timeout=120, check=True)
    return json.loads(done.stdout)


def test_a_full_collection_no_longer_visits_the_start_ups_objects_and_garbage_goes():
    found = _freeze()
    # the modules' objects (tens of thousands) are left out; what the collector still
    # visits is what came after
    assert found["frozen"] > 20_000
    assert found["tracked"] < found["frozen"] / 100
    # garbage of before the freeze was collected, not frozen; garbage of after is
    # collected as always
    assert found["before"] and found["after"]


def test_the_tango_servers_start_up_has_blissdatas_modules_among_its_objects():
    # as the server does before its devices exist (their writers are replaced by Init,
    # and must stay collectable): every installed source's modules are imported first
    alone, found = _freeze(), _freeze("sources")
    assert found["sources"] == ["nws", "blissdata"] and found["blissdata"]
    assert not alone["blissdata"]
    assert found["frozen"] > alone["frozen"] + 10_000
    assert found["tracked"] < found["frozen"] / 100
