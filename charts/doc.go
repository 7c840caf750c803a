// Package charts holds the Helm charts of the hub (jobset-fleet-hub) and of
// the agent (jobset-fleet-agent), and the tests that keep them installing
// what config/hub and config/agent install. The CRDs, RBAC roles, webhook
// configurations and policies in them, and the monitoring pack their
// templates read from files/ (config/prometheus), are copied from config/ by
// hack/generate-charts.sh (make manifests).
package charts
