package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

// The observability pack (config/prometheus) names metrics in its alert
// rules and its dashboard. Each must be served by the real binaries, or
// the alert never fires and the panel stays empty.
func TestMonitoringPackMetricsExist(t *testing.T) {
	dir := filepath.Join(testenv.RepoRoot(), "config", "prometheus")
	exprs := append(ruleExpressions(t, filepath.Join(dir, "prometheusrule.yaml")), dashboardExpressions(t, filepath.Join(dir, "jobset-fleet-dashboard.json"))...)

	hubAddr, agentAddr := freeAddr(t), freeAddr(t)
	env.runHubProcess(t, "--metrics-bind-address="+hubAddr, "--metrics-secure=false")
	env.members[alpha].runAgentProcess(t, agentProcessOptions{args: []string{"--metrics-bind-address=" + agentAddr, "--metrics-secure=false"}})

	// The hub reports each member's state once elected and its inventory
	// ran; a member's series are there (reading 0) before anything happened
	// on it.
	var hubSamples map[string]bool
	testenv.Eventually(t, time.Minute, "hub metrics of every member", func() error {
		page, err := scrape(hubAddr)
		if err != nil {
			return err
		}
		for _, m := range env.names {
			for _, want := range []string{
				fmt.Sprintf(`jobset_fleet_hub_member_state{cluster=%q,state="healthy"} 1`, m),
				fmt.Sprintf(`jobset_fleet_hub_member_state{cluster=%q,state="lost"} 0`, m),
				fmt.Sprintf(`jobset_fleet_hub_awaiting_fence_jobsets{cluster=%q} `, m),
				fmt.Sprintf(`jobset_fleet_hub_start_latency_seconds_count{cluster=%q} `, m),
			} {
				if !strings.Contains(page, want) {
					return fmt.Errorf("no %s in the hub's metrics", want)
				}
			}
		}
		hubSamples = sampleNames(page)
		return nil
	})
	var agentSamples map[string]bool
	testenv.Eventually(t, time.Minute, "agent metrics", func() error {
		page, err := scrape(agentAddr)
		if err != nil {
			return err
		}
		if want := fmt.Sprintf(`jobset_fleet_agent_last_renewal_timestamp_seconds{cluster=%q} `, alpha); !strings.Contains(page, want) {
			return fmt.Errorf("no %s in the agent's metrics", want)
		}
		agentSamples = sampleNames(page)
		return nil
	})

	for _, e := range exprs {
		names := metricNames(e)
		if len(names) == 0 {
			t.Errorf("expression %q names no metric of the fleet", e)
		}
		for _, n := range names {
			if !hubSamples[n] && !agentSamples[n] {
				t.Errorf("%s (in %q) is served by neither the hub nor the agent", n, e)
			}
		}
	}
}

// promRule is the part of a monitoring.coreos.com/v1 PrometheusRule the
// pack uses; it is read strictly, so a misspelt field fails the test.
type promRule struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// ruleExpressions returns the alert expressions, and checks the alerts
// the fleet promises are there.
func ruleExpressions(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	must(t, err)
	var r promRule
	if err := yaml.UnmarshalStrict(data, &r); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if r.APIVersion != "monitoring.coreos.com/v1" || r.Kind != "PrometheusRule" {
		t.Fatalf("%s is a %s %s, not a monitoring.coreos.com/v1 PrometheusRule", path, r.APIVersion, r.Kind)
	}
	var exprs, alerts []string
	for _, g := range r.Spec.Groups {
		for _, rule := range g.Rules {
			if _, err := time.ParseDuration(rule.For); rule.For != "" && err != nil {
				t.Errorf("alert %s: for %q: %v", rule.Alert, rule.For, err)
			}
			if rule.Labels["severity"] == "" || rule.Annotations["summary"] == "" {
				t.Errorf("alert %s has no severity or summary", rule.Alert)
			}
			alerts = append(alerts, rule.Alert)
			exprs = append(exprs, rule.Expr)
		}
	}
	for _, want := range []string{"JobSetFleetMemberLost", "JobSetFleetJobSetAwaitingFence", "JobSetFleetAgentFenced", "JobSetFleetQueueWaitHigh"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("%s has no alert %s", path, want)
		}
	}
	return exprs
}

// dashboardExpressions returns the queries of the dashboard's panels and
// template variables.
func dashboardExpressions(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	must(t, err)
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var exprs []string
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			exprs = append(exprs, v.Definition)
		}
	}
	if len(d.Panels) == 0 {
		t.Fatalf("%s has no panels", path)
	}
	return exprs
}

// fleetMetric matches the fleet's metric names in PromQL (all start with
// jobset_): outside label matchers, strings and ranges, which never hold
// them.
var fleetMetric = regexp.MustCompile(`\bjobset_[a-zA-Z0-9_:]*`)

// labelMatchers are {...} blocks; their values are not metric names.
var labelMatchers = regexp.MustCompile(`\{[^}]*\}`)

func metricNames(expr string) []string {
	return fleetMetric.FindAllString(labelMatchers.ReplaceAllString(expr, "{}"), -1)
}

// sampleNames are the names of the samples on a metrics page in the text
// format (a histogram's _bucket, _sum and _count each).
func sampleNames(page string) map[string]bool {
	names := map[string]bool{}
	for line := range strings.Lines(page) {
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

func scrape(addr string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return string(body), nil
}

// freeAddr is a loopback address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := l.Addr().String()
	must(t, l.Close())
	return addr
}
