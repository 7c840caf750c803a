package manager

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/yaml"

	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

// TestMetricsNeedAuthorizedToken: with the default flags both binaries
// serve metrics over HTTPS to clients the apiserver authenticates and
// authorizes only: no token gets 401, a token whose identity may not GET
// /metrics 403, one bound to the shipped metrics-reader ClusterRole 200.
func TestMetricsNeedAuthorizedToken(t *testing.T) {
	c := testenv.Start(t, "metrics-auth")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var fss cliflag.NamedFlagSets
	var f Flags
	f.AddFlags(&fss, Component{Name: "metrics-test", Namespace: "default"})
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	for _, name := range fss.Order {
		fs.AddFlagSet(fss.FlagSets[name])
	}
	if err := fs.Parse([]string{"--kubeconfig=" + c.KubeconfigPath, "--leader-elect=false", "--metrics-bind-address=" + addr, "--health-probe-bind-address=0"}); err != nil {
		t.Fatal(err)
	}
	_, mgr, err := New(f, Component{Name: "metrics-test"}, cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	}()

	// A scraper bound to the shipped ClusterRole (the hub's and the agent's
	// are the same rule), and an identity without it.
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "hub", "metrics_reader_role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.UnmarshalStrict(data, role); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "scraper"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "default", Name: "scraper"}},
	}
	if err := c.Client.Create(ctx, role); err != nil {
		t.Fatal(err)
	}
	if err := c.Client.Create(ctx, binding); err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	token := func(name string) string {
		t.Helper()
		if err := c.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}); err != nil {
			t.Fatal(err)
		}
		tr, err := cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, name,
			&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	scraper, nobody := token("scraper"), token("nobody")

	httpClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the metrics server's self-signed certificate
	}}
	scrape := func(token string) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/metrics", nil)
		if err != nil {
			return 0, "", err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, _, err := scrape("")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no HTTPS metrics server at %s: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, tc := range []struct {
		who, token string
		want       int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"a token without the metrics-reader role", nobody, http.StatusForbidden},
		{"a token bound to the metrics-reader role", scraper, http.StatusOK},
	} {
		code, body, err := scrape(tc.token)
		if err != nil || code != tc.want {
			t.Errorf("scrape with %s: %d, %v; want %d", tc.who, code, err, tc.want)
		}
		if tc.want == http.StatusOK && !strings.Contains(body, "# HELP") {
			t.Errorf("scrape with %s: body %q is no metrics page", tc.who, fmt.Sprintf("%.200s", body))
		}
		if tc.want == http.StatusOK && !strings.Contains(body, BuildInfoMetric+`{git_commit="`) {
			t.Errorf("scrape with %s: no %s series", tc.who, BuildInfoMetric)
		}
	}
}
