package charts

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

// The namespace config/ installs into, and the only one the charts accept.
const namespace = fleet.SystemNamespace

// tool is a binary of bin/ (hack/tools.sh builds it).
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "bin", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing: run 'hack/tools.sh %s' (make verify-charts does): %v", p, name, err)
	}
	return p
}

func run(t *testing.T, bin string, args ...string) ([]byte, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Offline and independent of the user's Helm setup.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", filepath.Base(bin), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// helmTemplate renders a chart with its CRDs, as `helm install` would
// install it into ns, with the given values files.
func helmTemplate(t *testing.T, chart, ns string, valuesFiles ...string) ([]*unstructured.Unstructured, error) {
	t.Helper()
	args := []string{"template", "jobset-fleet", chart, "--namespace", ns, "--include-crds"}
	for _, f := range valuesFiles {
		args = append(args, "--values", f)
	}
	out, err := run(t, tool(t, "helm"), args...)
	if err != nil {
		return nil, err
	}
	return decode(t, out), nil
}

func kustomize(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	out, err := run(t, tool(t, "kubectl"), "kustomize", dir)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, out)
}

func decode(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs
		} else if err != nil {
			t.Fatalf("reading rendered manifests: %v", err)
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			t.Fatalf("decoding rendered manifests: %v", err)
		}
		if string(j) == "null" { // a document of comments only
			continue
		}
		o := &unstructured.Unstructured{}
		if err := o.UnmarshalJSON(j); err != nil {
			t.Fatalf("decoding rendered manifests: %v\n%s", err, doc)
		}
		objs = append(objs, o)
	}
}

func key(o *unstructured.Unstructured) string {
	return fmt.Sprintf("%s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName())
}

func byKey(objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	m := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		m[key(o)] = o
	}
	return m
}

func mustRender(t *testing.T, chart string, valuesFiles ...string) map[string]*unstructured.Unstructured {
	t.Helper()
	objs, err := helmTemplate(t, chart, namespace, valuesFiles...)
	if err != nil {
		t.Fatal(err)
	}
	return byKey(objs)
}

// TestChartsInstallWhatConfigInstalls: with default values each chart
// renders the objects of its kustomize base (config/hub, config/agent) but
// the Namespace (helm install --create-namespace makes it), and every one of
// them is the same (CRDs, RBAC rules and bindings, webhook configurations,
// the admission policy, Services, the Deployment with its args, the PDB) up
// to the labels and annotations Helm adds.
func TestChartsInstallWhatConfigInstalls(t *testing.T) {
	for _, c := range []struct{ chart, config string }{
		{"jobset-fleet-hub", "../config/hub"},
		{"jobset-fleet-agent", "../config/agent"},
	} {
		t.Run(c.chart, func(t *testing.T) {
			want := byKey(kustomize(t, c.config))
			got := mustRender(t, c.chart)
			delete(want, "Namespace /"+namespace)

			var missing, extra []string
			for k := range want {
				if got[k] == nil {
					missing = append(missing, k)
				}
			}
			for k := range got {
				if want[k] == nil {
					extra = append(extra, k)
				}
			}
			slices.Sort(missing)
			slices.Sort(extra)
			if len(missing) > 0 || len(extra) > 0 {
				t.Fatalf("the chart renders other objects than %s:\nmissing: %v\nextra: %v", c.config, missing, extra)
			}
			for k, w := range want {
				g := got[k]
				for l, v := range w.GetLabels() {
					if g.GetLabels()[l] != v {
						t.Errorf("%s: label %s=%q, %s has %q", k, l, g.GetLabels()[l], c.config, v)
					}
				}
				if diff := cmp.Diff(withoutMetadataExtras(w), withoutMetadataExtras(g)); diff != "" {
					t.Errorf("%s differs from %s (-config +chart):\n%s", k, c.config, diff)
				}
			}
		})
	}
}

func withoutMetadataExtras(o *unstructured.Unstructured) map[string]any {
	c := o.DeepCopy()
	c.SetLabels(nil)
	c.SetAnnotations(nil)
	return c.Object
}

// TestChartsValues: the usual values reach the objects: image, replicas,
// resources, extra flags, node placement, pull secrets, priority class, pod
// annotations, a brought-own webhook certificate
// (mounted, with --manage-webhook-certs=false, its CA in every webhook and
// the relay's APIService), the
// metrics port, metrics readers and the ServiceMonitor.
func TestChartsValues(t *testing.T) {
	for _, c := range []struct{ chart, component, webhookService string }{
		{"jobset-fleet-hub", "hub", "jobset-fleet-hub-webhook-service"},
		{"jobset-fleet-agent", "agent", "jobset-fleet-webhook-service"},
	} {
		t.Run(c.chart, func(t *testing.T) {
			values := filepath.Join(t.TempDir(), "values.yaml")
			if err := os.WriteFile(values, []byte(`
image: {repository: registry.example/fleet/x, tag: v9.8.7, pullPolicy: Always}
replicas: 3
imagePullSecrets: [{name: registry-creds}]
priorityClassName: system-cluster-critical
podAnnotations: {example.com/team: fleet}
resources: {requests: {cpu: 200m, memory: 128Mi}, limits: {memory: 2Gi}}
extraArgs: ["--kube-api-qps=100", "--concurrent-reconciles=4"]
nodeSelector: {node-role.kubernetes.io/control-plane: ""}
tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]
affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/os, operator: In, values: [linux]}]}]}}}
webhook:
  certSecretName: my-webhook-tls
  certDir: /certs
  caBundle: Q0EK
  configurationAnnotations: {cert-manager.io/inject-ca-from: jobset-fleet-system/my-cert}
metrics:
  port: 8445
  readers: [{kind: ServiceAccount, name: prometheus-k8s, namespace: monitoring}]
  serviceMonitor: {enabled: true, labels: {release: prom}, interval: 15s}
`), 0o600); err != nil {
				t.Fatal(err)
			}
			objs := mustRender(t, c.chart, values)
			name := "jobset-fleet-" + c.component

			dep := objs["Deployment "+namespace+"/"+name]
			if dep == nil {
				t.Fatalf("no Deployment %s", name)
			}
			if r, _, _ := unstructured.NestedInt64(dep.Object, "spec", "replicas"); r != 3 {
				t.Errorf("replicas %d, want 3", r)
			}
			pod, _, _ := unstructured.NestedMap(dep.Object, "spec", "template", "spec")
			ctr := pod["containers"].([]any)[0].(map[string]any)
			for field, want := range map[string]any{
				"image":           "registry.example/fleet/x:v9.8.7",
				"imagePullPolicy": "Always",
				"resources": map[string]any{
					"requests": map[string]any{"cpu": "200m", "memory": "128Mi"},
					"limits":   map[string]any{"memory": "2Gi"},
				},
				"volumeMounts": []any{map[string]any{"name": "webhook-certs", "mountPath": "/certs", "readOnly": true}},
			} {
				if diff := cmp.Diff(want, ctr[field]); diff != "" {
					t.Errorf("container %s (-want +got):\n%s", field, diff)
				}
			}
			args := fmt.Sprint(ctr["args"])
			for _, a := range []string{"--webhook-cert-dir=/certs", "--manage-webhook-certs=false", "--metrics-bind-address=:8445", "--kube-api-qps=100", "--concurrent-reconciles=4"} {
				if !strings.Contains(args, a) {
					t.Errorf("args %s lack %s", args, a)
				}
			}
			for field, want := range map[string]any{
				"nodeSelector":      map[string]any{"node-role.kubernetes.io/control-plane": ""},
				"tolerations":       []any{map[string]any{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}},
				"volumes":           []any{map[string]any{"name": "webhook-certs", "secret": map[string]any{"secretName": "my-webhook-tls"}}},
				"imagePullSecrets":  []any{map[string]any{"name": "registry-creds"}},
				"priorityClassName": "system-cluster-critical",
			} {
				if diff := cmp.Diff(want, pod[field]); diff != "" {
					t.Errorf("pod %s (-want +got):\n%s", field, diff)
				}
			}
			if a, _, _ := unstructured.NestedString(dep.Object, "spec", "template", "metadata", "annotations", "example.com/team"); a != "fleet" {
				t.Errorf("pod annotation example.com/team=%q, want fleet", a)
			}
			if _, ok, _ := unstructured.NestedMap(pod, "affinity", "nodeAffinity"); !ok {
				t.Errorf("pod affinity %v lacks the nodeAffinity of the values", pod["affinity"])
			}

			for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
				var wc *unstructured.Unstructured
				for _, o := range objs {
					if o.GetKind() == kind {
						wc = o
					}
				}
				if wc == nil {
					t.Fatalf("no %s", kind)
				}
				if got := wc.GetAnnotations()["cert-manager.io/inject-ca-from"]; got != "jobset-fleet-system/my-cert" {
					t.Errorf("%s: inject-ca-from annotation %q", wc.GetName(), got)
				}
				hooks, _, _ := unstructured.NestedSlice(wc.Object, "webhooks")
				for _, h := range hooks {
					cc := h.(map[string]any)["clientConfig"].(map[string]any)
					if cc["caBundle"] != "Q0EK" || cc["service"].(map[string]any)["name"] != c.webhookService {
						t.Errorf("%s: clientConfig %v, want caBundle Q0EK and Service %s", wc.GetName(), cc, c.webhookService)
					}
				}
			}

			if c.component == "hub" {
				// The relay is served with the same certificate, so its
				// APIService trusts the same CA.
				if !strings.Contains(args, "--relay-cert-dir=/certs") {
					t.Errorf("args %s lack --relay-cert-dir=/certs", args)
				}
				as := objs["APIService /v1alpha1.relay.fleet.jobset.x-k8s.io"]
				if as == nil {
					t.Fatal("no relay APIService")
				}
				if ca, _, _ := unstructured.NestedString(as.Object, "spec", "caBundle"); ca != "Q0EK" {
					t.Errorf("relay APIService caBundle %q, want Q0EK", ca)
				}
				if got := as.GetAnnotations()["cert-manager.io/inject-ca-from"]; got != "jobset-fleet-system/my-cert" {
					t.Errorf("relay APIService inject-ca-from annotation %q", got)
				}
				if svc, _, _ := unstructured.NestedString(as.Object, "spec", "service", "name"); svc != c.webhookService {
					t.Errorf("relay APIService names Service %q, want the certificate's, %s", svc, c.webhookService)
				}
			}

			svc := objs["Service "+namespace+"/"+name+"-metrics"]
			if p, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports"); p[0].(map[string]any)["port"] != int64(8445) {
				t.Errorf("metrics Service ports %v, want 8445", p)
			}
			crb := objs["ClusterRoleBinding /"+name+"-metrics-reader"]
			if crb == nil {
				t.Fatalf("no ClusterRoleBinding %s-metrics-reader for metrics.readers", name)
			}
			if diff := cmp.Diff([]any{map[string]any{"kind": "ServiceAccount", "name": "prometheus-k8s", "namespace": "monitoring"}}, crb.Object["subjects"]); diff != "" {
				t.Errorf("metrics reader subjects (-want +got):\n%s", diff)
			}
			sm := objs["ServiceMonitor "+namespace+"/"+name+"-metrics"]
			if sm == nil {
				t.Fatal("no ServiceMonitor with metrics.serviceMonitor.enabled")
			}
			if sm.GetLabels()["release"] != "prom" {
				t.Errorf("ServiceMonitor labels %v lack release=prom", sm.GetLabels())
			}
			sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
			if !matches(sel, svc.GetLabels()) {
				t.Errorf("ServiceMonitor selector %v does not select the metrics Service (labels %v)", sel, svc.GetLabels())
			}
			ep, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
			if e := ep[0].(map[string]any); e["port"] != "https" || e["scheme"] != "https" || e["interval"] != "15s" {
				t.Errorf("ServiceMonitor endpoint %v, want port https, scheme https, interval 15s", e)
			}
		})
	}
}

func matches(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}

// TestChartsDefaultsLeaveOptionalObjectsOut: no ServiceMonitor,
// PrometheusRule (their CRDs may not exist) or dashboard, no metrics reader
// binding, and the agent's
// PodDisruptionBudget only while there is a replica to spare.
func TestChartsDefaultsLeaveOptionalObjectsOut(t *testing.T) {
	for _, chart := range []string{"jobset-fleet-hub", "jobset-fleet-agent"} {
		for k := range mustRender(t, chart) {
			if strings.HasPrefix(k, "ServiceMonitor ") || strings.HasPrefix(k, "PrometheusRule ") || strings.HasPrefix(k, "ConfigMap ") ||
				strings.HasSuffix(k, "-metrics-reader") && strings.HasPrefix(k, "ClusterRoleBinding ") {
				t.Errorf("%s renders %s by default", chart, k)
			}
		}
	}
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte("replicas: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if pdb := mustRender(t, "jobset-fleet-agent", values)["PodDisruptionBudget "+namespace+"/jobset-fleet-agent"]; pdb != nil {
		t.Error("one agent replica with a PodDisruptionBudget of minAvailable 1: no node drain could evict it")
	}
}

// TestChartsRefuseOtherNamespaces: join, the webhook configurations and the
// generated RBAC name jobset-fleet-system, so another release namespace
// fails at render time with the reason rather than installing something
// that cannot work.
func TestChartsRefuseOtherNamespaces(t *testing.T) {
	for _, chart := range []string{"jobset-fleet-hub", "jobset-fleet-agent"} {
		_, err := helmTemplate(t, chart, "fleet")
		if err == nil || !strings.Contains(err.Error(), "install into the namespace jobset-fleet-system") {
			t.Errorf("%s in namespace fleet: %v, want the refusal naming jobset-fleet-system", chart, err)
		}
	}
}

// TestChartsMonitoring: with metrics.prometheusRule and
// metrics.grafanaDashboard enabled, the charts install config/prometheus's
// alerts, each chart those on its own component's series and together every
// one of them unchanged (a rule on neither's series would be lost), and the
// hub the dashboard byte for byte, labelled for Grafana's sidecar.
func TestChartsMonitoring(t *testing.T) {
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte(`
metrics:
  prometheusRule: {enabled: true, labels: {release: prom}}
  grafanaDashboard: {enabled: true}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	config := byKey(kustomize(t, "../config/prometheus"))
	want := map[string]any{} // alert name: rule
	var order []string
	groups, _, _ := unstructured.NestedSlice(config["PrometheusRule "+namespace+"/jobset-fleet"].Object, "spec", "groups")
	for _, g := range groups {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			name := r.(map[string]any)["alert"].(string)
			want[name] = r
			order = append(order, g.(map[string]any)["name"].(string)+"/"+name)
		}
	}
	if len(want) == 0 {
		t.Fatal("config/prometheus has no alert rules")
	}

	got := map[string]any{}
	var gotOrder []string
	for _, c := range []string{"hub", "agent"} {
		objs := mustRender(t, "jobset-fleet-"+c, values)
		rule := objs["PrometheusRule "+namespace+"/jobset-fleet-"+c]
		if rule == nil {
			t.Fatalf("jobset-fleet-%s: no PrometheusRule with metrics.prometheusRule.enabled", c)
		}
		if rule.GetLabels()["release"] != "prom" {
			t.Errorf("jobset-fleet-%s: PrometheusRule labels %v lack release=prom", c, rule.GetLabels())
		}
		groups, _, _ := unstructured.NestedSlice(rule.Object, "spec", "groups")
		for _, g := range groups {
			for _, r := range g.(map[string]any)["rules"].([]any) {
				rm := r.(map[string]any)
				if expr := rm["expr"].(string); !strings.Contains(expr, "jobset_fleet_"+c+"_") {
					t.Errorf("jobset-fleet-%s alerts on another component's series: %s", c, expr)
				}
				got[rm["alert"].(string)] = r
				gotOrder = append(gotOrder, g.(map[string]any)["name"].(string)+"/"+rm["alert"].(string))
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the charts' alert rules differ from config/prometheus's (-config +charts):\n%s", diff)
	}
	slices.Sort(order)
	slices.Sort(gotOrder)
	if diff := cmp.Diff(order, gotOrder); diff != "" {
		t.Errorf("alert groups (-config +charts):\n%s", diff)
	}

	dashboard, err := os.ReadFile("../config/prometheus/jobset-fleet-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	cm := mustRender(t, "jobset-fleet-hub", values)["ConfigMap "+namespace+"/jobset-fleet-dashboard"]
	if cm == nil {
		t.Fatal("no dashboard ConfigMap with metrics.grafanaDashboard.enabled")
	}
	if cm.GetLabels()["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap labels %v lack grafana_dashboard=1", cm.GetLabels())
	}
	data, _, _ := unstructured.NestedString(cm.Object, "data", "jobset-fleet-dashboard.json")
	if data != strings.TrimSuffix(string(dashboard), "\n") {
		t.Errorf("the dashboard ConfigMap's JSON differs from config/prometheus/jobset-fleet-dashboard.json")
	}
}
