"""Run one DAG with ``dag.test()`` in a fresh process (AIRFLOW_HOME and config come from the environment).

Prints one JSON line: the run state and every task instance's state, by task id and map index.
"""

import json
import sys


def main() -> int:
    from airflow.dag_processing.dagbag import DagBag

    dag_id = sys.argv[1]
    conf = json.loads(sys.argv[2]) if len(sys.argv) > 2 else None
    bag = DagBag()
    if bag.import_errors:
        print(json.dumps({"import_errors": {k: str(v) for k, v in bag.import_errors.items()}}))
        return 2
    dag = bag.get_dag(dag_id)
    run = dag.test(run_conf=conf)
    tis = [{"task_id": ti.task_id, "map_index": ti.map_index, "state": str(ti.state)}
           for ti in run.get_task_instances()]
    print("RESULT " + json.dumps({"state": str(run.state), "run_id": run.run_id, "tasks": tis}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
