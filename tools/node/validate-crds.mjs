// Validates Prometheus Operator custom resources (ServiceMonitor, PrometheusRule, PodMonitor)
// against the schemas of their CRDs, as packaged by @kubernetes-models/prometheus-operator.
// kubernetes-validate knows only built-in kinds; tests/deploy/test_kubernetes.py sends the
// rest here.
//
//   node validate-crds.mjs resources.json     (a JSON array of resources)
//
// Prints one line per resource; exits 1 if any is invalid, 2 if a kind is not covered.
import { readFileSync } from "node:fs";
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const MODELS = {
  "monitoring.coreos.com/v1/PodMonitor": PodMonitor,
  "monitoring.coreos.com/v1/PrometheusRule": PrometheusRule,
  "monitoring.coreos.com/v1/ServiceMonitor": ServiceMonitor,
};

let status = 0;
for (const resource of JSON.parse(readFileSync(process.argv[2], "utf8"))) {
  const kind = `${resource.apiVersion}/${resource.kind}`;
  const name = `${kind} ${resource.metadata?.name}`;
  const Model = MODELS[kind];
  if (Model === undefined) {
    console.log(`UNSUPPORTED ${name}`);
    status = Math.max(status, 2);
    continue;
  }
  try {
    new Model(resource).validate();
    console.log(`OK ${name}`);
  } catch (error) {
    console.log(`INVALID ${name}: ${error.message}`);
    status = Math.max(status, 1);
  }
}
process.exit(status);
