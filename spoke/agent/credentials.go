package agent

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

// +kubebuilder:rbac:groups="",namespace=jobset-fleet-system,resources=secrets,resourceNames=hub-kubeconfig,verbs=get;update

// CredentialsOptions configure how the agent keeps its hub token current.
type CredentialsOptions struct {
	// RefreshFraction: once this fraction of the current token's lifetime
	// (exp - iat) has passed, the agent requests a new token for itself;
	// default 0.8.
	RefreshFraction float64
	// ReloadInterval is how often the Secret or file is read again, to pick
	// up credentials an operator rotated; default 30s.
	ReloadInterval time.Duration
	// Context is the kubeconfig context to use; default its current one.
	Context string
	// Clock; default the real clock.
	Clock clock.Clock
}

// DefaultCredentialsOptions are the defaults of CredentialsOptions (and of
// the agent's flags for them).
func DefaultCredentialsOptions() CredentialsOptions {
	return CredentialsOptions{RefreshFraction: 0.8, ReloadInterval: 30 * time.Second}
}

func (o *CredentialsOptions) defaults() {
	d := DefaultCredentialsOptions()
	if o.RefreshFraction <= 0 || o.RefreshFraction >= 1 {
		o.RefreshFraction = d.RefreshFraction
	}
	if o.ReloadInterval <= 0 {
		o.ReloadInterval = d.ReloadInterval
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
}

// HubCredentials is the agent's hub bearer token. Every request made with
// the rest.Config HubConfigFromSecret or HubConfigFromFile returns reads the
// current token, so a new one is used at once, with no restart.
//
// Run keeps it current: it reads the Secret (or file) again every
// ReloadInterval, and before RefreshFraction of the token's lifetime has
// passed it requests a new token for the agent's own ServiceAccount
// (TokenRequest) and writes it back there. The token's times are read from
// its JWT claims, unverified: they only schedule the refresh. A token
// without an expiry (a legacy Secret token) is never refreshed.
type HubCredentials struct {
	token atomic.Pointer[string]
	opts  CredentialsOptions
	cfg   *rest.Config // the reloading config, for token requests

	// Exactly one source: a member Secret or a file.
	member client.Client
	secret client.ObjectKey
	path   string

	mu  sync.Mutex
	raw []byte // the kubeconfig last read or written
}

// HubConfigFromSecret reads the agent's hub kubeconfig from the member
// Secret key (key "kubeconfig") and returns a config whose token follows the
// returned credentials. member must be able to get and update that Secret.
func HubConfigFromSecret(ctx context.Context, member client.Client, key client.ObjectKey, opts CredentialsOptions) (*rest.Config, *HubCredentials, error) {
	c := &HubCredentials{member: member, secret: key}
	raw, err := c.read(ctx)
	if err != nil {
		return nil, nil, err
	}
	return c.init(raw, opts)
}

// HubConfigFromFile is HubConfigFromSecret for a kubeconfig file (the
// --hub-kubeconfig of a local run): the file is read again when it changes,
// and refreshed tokens are written back to it.
func HubConfigFromFile(path string, opts CredentialsOptions) (*rest.Config, *HubCredentials, error) {
	c := &HubCredentials{path: path}
	raw, err := c.read(context.Background())
	if err != nil {
		return nil, nil, err
	}
	return c.init(raw, opts)
}

func (c *HubCredentials) init(raw []byte, opts CredentialsOptions) (*rest.Config, *HubCredentials, error) {
	opts.defaults()
	c.opts = opts
	cfg, err := restConfig(raw, opts.Context)
	if err != nil {
		return nil, nil, fmt.Errorf("hub kubeconfig in %s: %w", c.source(), err)
	}
	c.raw = raw
	token := cfg.BearerToken
	c.token.Store(&token)
	cfg.BearerToken = ""
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return &bearer{token: c.Token, next: rt} })
	c.cfg = cfg
	return rest.CopyConfig(cfg), c, nil
}

// Token is the current hub token.
func (c *HubCredentials) Token() string { return *c.token.Load() }

// secretObject is the member Secret the credentials come from, read live so
// an event about it names its UID; nil when they come from a file.
func (c *HubCredentials) secretObject(ctx context.Context) (*corev1.Secret, error) {
	if c.path != "" {
		return nil, nil
	}
	secret := &corev1.Secret{}
	if err := c.member.Get(ctx, c.secret, secret); err != nil {
		return nil, fmt.Errorf("reading hub kubeconfig Secret %s: %w", c.secret, err)
	}
	return secret, nil
}

func (c *HubCredentials) source() string {
	if c.path != "" {
		return "file " + c.path
	}
	return "Secret " + c.secret.String()
}

// Run keeps the token current until ctx ends. Setup runs it when given in
// Options.Credentials.
func (c *HubCredentials) Run(ctx context.Context) {
	logger := log.FromContext(ctx).WithValues("credentials", c.source())
	ctx = log.IntoContext(ctx, logger)
	for {
		c.Reload(ctx)
		wait := c.opts.ReloadInterval
		if due, ok := c.refreshDue(); ok {
			if left := due.Sub(c.opts.Clock.Now()); left <= 0 {
				if err := c.refresh(ctx); err != nil {
					logger.Error(err, "Requesting a new hub token; retrying", "retryIn", wait)
				}
			} else {
				wait = min(wait, left)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-c.opts.Clock.After(wait):
		}
	}
}

// Reload reads the Secret or file again and, when its token changed, uses
// the new one.
func (c *HubCredentials) Reload(ctx context.Context) {
	logger := log.FromContext(ctx)
	raw, err := c.read(ctx)
	if err != nil {
		logger.Error(err, "Reading the hub credentials again")
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if bytes.Equal(raw, c.raw) {
		return
	}
	cfg, err := restConfig(raw, c.opts.Context)
	if err != nil {
		logger.Error(err, "Hub credentials changed but do not parse; keeping the current ones")
		return
	}
	c.raw = raw
	if cfg.Host != c.cfg.Host || !bytes.Equal(cfg.CAData, c.cfg.CAData) {
		logger.Info("Hub address or CA changed; only the token is reloaded, restart the agent to use the rest")
	}
	if cfg.BearerToken != c.Token() {
		token := cfg.BearerToken
		c.token.Store(&token)
		logger.Info("Hub token rotated; using the new one")
	}
}

// refreshDue is when the current token should be replaced; false when it
// has no expiry.
func (c *HubCredentials) refreshDue() (time.Time, bool) {
	claims, err := parseClaims(c.Token())
	if err != nil || claims.Exp == 0 || claims.Iat == 0 || claims.Exp <= claims.Iat {
		return time.Time{}, false
	}
	lifetime := float64(claims.Exp - claims.Iat)
	return time.Unix(claims.Iat, 0).Add(time.Duration(c.opts.RefreshFraction * lifetime * float64(time.Second))), true
}

// refresh requests a token of the same lifetime for the ServiceAccount the
// current token belongs to, stores it where the current one came from, and
// uses it.
func (c *HubCredentials) refresh(ctx context.Context) error {
	claims, err := parseClaims(c.Token())
	if err != nil {
		return err
	}
	parts := strings.Split(claims.Sub, ":")
	if len(parts) != 4 || parts[0] != "system" || parts[1] != "serviceaccount" {
		return fmt.Errorf("hub token subject %q is not a ServiceAccount", claims.Sub)
	}
	ns, name := parts[2], parts[3]
	cs, err := kubernetes.NewForConfig(c.cfg)
	if err != nil {
		return err
	}
	lifetime := max(claims.Exp-claims.Iat, 600) // TokenRequest's minimum
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(lifetime)},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("TokenRequest for ServiceAccount %s/%s: %w", ns, name, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	raw, err := withToken(c.raw, c.opts.Context, tr.Status.Token)
	if err != nil {
		return err
	}
	// Used before it is stored: a failed write must not leave the agent
	// with a token about to expire. The next reload would bring the old
	// one back only if someone else wrote the Secret meanwhile.
	token := tr.Status.Token
	c.token.Store(&token)
	if err := c.write(ctx, raw); err != nil {
		return fmt.Errorf("storing the new hub token: %w", err)
	}
	c.raw = raw
	log.FromContext(ctx).Info("Requested a new hub token", "serviceAccount", ns+"/"+name, "expires", tr.Status.ExpirationTimestamp.Time)
	return nil
}

func (c *HubCredentials) read(ctx context.Context) ([]byte, error) {
	if c.path != "" {
		raw, err := os.ReadFile(c.path)
		if err != nil {
			return nil, fmt.Errorf("reading hub kubeconfig: %w", err)
		}
		return raw, nil
	}
	secret := &corev1.Secret{}
	if err := c.member.Get(ctx, c.secret, secret); err != nil {
		return nil, fmt.Errorf("reading hub kubeconfig Secret %s: %w", c.secret, err)
	}
	raw, ok := secret.Data[fleet.HubKubeconfigKey]
	if !ok {
		return nil, fmt.Errorf("hub kubeconfig Secret %s has no key %q", c.secret, fleet.HubKubeconfigKey)
	}
	return raw, nil
}

func (c *HubCredentials) write(ctx context.Context, raw []byte) error {
	if c.path != "" {
		return os.WriteFile(c.path, raw, 0o600)
	}
	secret := &corev1.Secret{}
	if err := c.member.Get(ctx, c.secret, secret); err != nil {
		return err
	}
	if !bytes.Equal(secret.Data[fleet.HubKubeconfigKey], c.raw) {
		return errors.New("the Secret changed since it was read; the next reload picks that up")
	}
	secret.Data[fleet.HubKubeconfigKey] = raw
	return c.member.Update(ctx, secret)
}

// restConfig is the client config of kubeconfig raw for context (empty:
// its current context).
func restConfig(raw []byte, context string) (*rest.Config, error) {
	cfg, err := clientcmd.Load(raw)
	if err != nil {
		return nil, err
	}
	return clientcmd.NewNonInteractiveClientConfig(*cfg, context, &clientcmd.ConfigOverrides{}, nil).ClientConfig()
}

// withToken is kubeconfig raw with the token of context (empty: its
// current context) replaced.
func withToken(raw []byte, context, token string) ([]byte, error) {
	cfg, err := clientcmd.Load(raw)
	if err != nil {
		return nil, fmt.Errorf("parsing hub kubeconfig: %w", err)
	}
	if context == "" {
		context = cfg.CurrentContext
	}
	kctx, ok := cfg.Contexts[context]
	if !ok || cfg.AuthInfos[kctx.AuthInfo] == nil {
		return nil, fmt.Errorf("hub kubeconfig has no user for context %q", context)
	}
	cfg.AuthInfos[kctx.AuthInfo].Token = token
	return clientcmd.Write(*cfg)
}

type jwtClaims struct {
	Sub string `json:"sub"`
	Iat int64  `json:"iat"`
	Exp int64  `json:"exp"`
}

// parseClaims decodes a JWT's claims without verifying it.
func parseClaims(token string) (jwtClaims, error) {
	var claims jwtClaims
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return claims, errors.New("hub token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return claims, fmt.Errorf("hub token claims: %w", err)
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return claims, fmt.Errorf("hub token claims: %w", err)
	}
	return claims, nil
}

// bearer sets the current token on every request.
type bearer struct {
	token func() string
	next  http.RoundTripper
}

func (b *bearer) RoundTrip(req *http.Request) (*http.Response, error) {
	token := b.token()
	if token == "" {
		return b.next.RoundTrip(req)
	}
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+token)
	return b.next.RoundTrip(req)
}
