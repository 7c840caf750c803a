package agent_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/membership"
	"github.com/jobset-fleet/jobset-fleet/spoke/agent"
)

// TestHubCredentials joins a member with 10-minute tokens (TokenRequest's
// minimum) and checks, on real apiservers, that the agent's credentials
// request a new token for themselves once the refresh threshold has passed
// (made seconds by RefreshFraction instead of waiting minutes), store it in
// the member Secret, and that every request reads the current token: one an
// operator writes into the Secret or file is used without a restart.
func TestHubCredentials(t *testing.T) {
	clusters := testenv.StartN(t, "creds-hub", "creds-member")
	hub, member := clusters[0], clusters[1]
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	kubeconfig, err := membership.Join(ctx, hub.Client, member.Client, membership.Options{
		ClusterName:     clusterName,
		HubServerURL:    hub.Config.Host,
		HubCAData:       hub.Config.CAData,
		SkipCRDs:        true,
		TokenExpiration: 10 * time.Minute,
	})
	must(t, err)
	secretKey := client.ObjectKey{Namespace: fleet.SystemNamespace, Name: fleet.HubKubeconfigSecret}
	opts := agent.CredentialsOptions{RefreshFraction: 3.0 / 600, ReloadInterval: 200 * time.Millisecond}
	cfg, creds, err := agent.HubConfigFromSecret(ctx, member.Client, secretKey, opts)
	must(t, err)
	first := creds.Token()
	if cfg.BearerToken != "" {
		t.Error("the config carries a fixed token besides the reloading one")
	}
	canRead := canReadProfile(t, cfg)
	must(t, canRead())

	go creds.Run(ctx)
	testenv.Eventually(t, 30*time.Second, "the token refreshed and stored", func() error {
		if creds.Token() == first {
			return errorf("token not refreshed yet")
		}
		if stored := storedToken(t, member.Client, secretKey); stored != creds.Token() {
			return errorf("the Secret holds another token than the one in use")
		}
		return nil
	})
	if lifetime := tokenLifetime(t, creds.Token()); lifetime != 10*time.Minute {
		t.Errorf("refreshed token lives %s, want the 10m of the one it replaces", lifetime)
	}
	must(t, canRead())

	// An operator rotates the Secret: a broken token is used at once
	// (requests fail), a good one heals it, no restart.
	cancel() // no refresh may interfere from here on
	ctx = context.Background()
	writeToken(t, member.Client, secretKey, "not-a-token")
	creds.Reload(ctx)
	if err := canRead(); !apierrors.IsUnauthorized(err) {
		t.Errorf("with a broken token in the Secret: want 401, got %v", err)
	}
	writeToken(t, member.Client, secretKey, adminToken(t, hub.Client))
	creds.Reload(ctx)
	must(t, canRead())

	// The same from a file.
	path := filepath.Join(t.TempDir(), "hub.kubeconfig")
	must(t, os.WriteFile(path, kubeconfig, 0o600))
	cfg, creds, err = agent.HubConfigFromFile(path, opts)
	must(t, err)
	canRead = canReadProfile(t, cfg)
	must(t, canRead())
	raw, err := os.ReadFile(path)
	must(t, err)
	must(t, os.WriteFile(path, []byte(strings.Replace(string(raw), creds.Token(), "not-a-token", 1)), 0o600))
	creds.Reload(ctx)
	if err := canRead(); !apierrors.IsUnauthorized(err) {
		t.Errorf("with a broken token in the file: want 401, got %v", err)
	}

	// --hub-context: a kubeconfig whose current context is another one.
	kc, err := clientcmd.Load(kubeconfig)
	must(t, err)
	agentContext := kc.CurrentContext
	kc.Clusters["elsewhere"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1"}
	kc.AuthInfos["someone"] = &clientcmdapi.AuthInfo{Token: "not-a-token"}
	kc.Contexts["elsewhere"] = &clientcmdapi.Context{Cluster: "elsewhere", AuthInfo: "someone"}
	kc.CurrentContext = "elsewhere"
	raw, err = clientcmd.Write(*kc)
	must(t, err)
	must(t, os.WriteFile(path, raw, 0o600))
	withContext := opts
	withContext.Context = agentContext
	cfg, _, err = agent.HubConfigFromFile(path, withContext)
	must(t, err)
	must(t, canReadProfile(t, cfg)())
}

func canReadProfile(t *testing.T, cfg *rest.Config) func() error {
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	must(t, err)
	return func() error {
		return c.Get(context.Background(), client.ObjectKey{Namespace: fleet.DefaultInventoryNamespace, Name: clusterName}, &clusterinventory.ClusterProfile{})
	}
}

func storedToken(t *testing.T, member client.Client, key client.ObjectKey) string {
	secret := &corev1.Secret{}
	must(t, member.Get(context.Background(), key, secret))
	cfg, err := clientcmd.RESTConfigFromKubeConfig(secret.Data[fleet.HubKubeconfigKey])
	must(t, err)
	return cfg.BearerToken
}

func writeToken(t *testing.T, member client.Client, key client.ObjectKey, token string) {
	t.Helper()
	secret := &corev1.Secret{}
	must(t, member.Get(context.Background(), key, secret))
	kc, err := clientcmd.Load(secret.Data[fleet.HubKubeconfigKey])
	must(t, err)
	kc.AuthInfos[kc.Contexts[kc.CurrentContext].AuthInfo].Token = token
	secret.Data[fleet.HubKubeconfigKey], err = clientcmd.Write(*kc)
	must(t, err)
	must(t, member.Update(context.Background(), secret))
}

// adminToken is a fresh token for the agent's ServiceAccount, as an
// operator would request one.
func adminToken(t *testing.T, hub client.Client) string {
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: memberNS, Name: membership.AgentServiceAccount}}
	must(t, hub.SubResource("token").Create(context.Background(), sa, tr))
	return tr.Status.Token
}

func tokenLifetime(t *testing.T, token string) time.Duration {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatal("token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	must(t, err)
	var claims struct{ Iat, Exp int64 }
	must(t, json.Unmarshal(payload, &claims))
	return time.Duration(claims.Exp-claims.Iat) * time.Second
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
