"""Run a benchmark against taskengine_core from another tree: run_base.py TREE SCRIPT ARGS..."""
import importlib.machinery, runpy, sys

tree = sys.argv[1]


class _Core:
    def find_spec(self, name, path=None, target=None):
        return importlib.machinery.PathFinder.find_spec(name, [tree]) if name == "taskengine_core" else None


sys.meta_path.insert(0, _Core())
import taskengine_core.events as e; print("code:", e.__file__)
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
