package membership

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

// A join in two steps, for a hub team and a member team that share no
// credentials (the pattern of kubeadm and clusteradm):
//
//  1. A hub admin runs CreateToken with hub credentials alone. It prepares
//     the hub side as Join does (member namespace, ClusterProfile, the
//     agent's ServiceAccount and Roles), mints the agent's first hub token
//     into the Secret JoinCredentialSecret of the member namespace, and
//     creates a bootstrap token: a Secret bootstrap-token-<id> in
//     kube-system, the format the apiserver's bootstrap token authenticator
//     (--enable-bootstrap-token-auth, on in kubeadm and kind clusters)
//     reads. The token authenticates as the user system:bootstrap:<id>,
//     which Roles allow only to read and delete that credential Secret and
//     its own Secret, and to read and record the cluster ID on the member's
//     ClusterProfile.
//  2. A member admin runs JoinWithToken with member credentials and the
//     JoinToken (which carries the hub's address and CA, so nothing else is
//     needed). It takes the agent's credential and deletes its Secret with
//     a UID precondition (so one join only gets it), records the member's
//     cluster ID, installs the member side, and deletes the bootstrap
//     token's Secret, which revokes the token.
//
// Bootstrap tokens, not a ServiceAccount token, because the apiserver
// enforces their expiry however short (the Secret's expiration, checked at
// each authentication), while TokenRequest refuses lifetimes under ten
// minutes. The agent's credential waits in a Secret, rather than being
// minted by the joiner, because the apiserver caches a successful token
// authentication for up to 10s: a spent token may still authenticate that
// long, but the credential it would fetch is gone.

const (
	// JoinerRole names the Roles and RoleBindings that let a join token do
	// its few things: JoinerRole in the member namespace, JoinerRole-<cluster>
	// in the inventory namespace, JoinerRole-<token id> in kube-system.
	JoinerRole = "jobset-fleet-joiner"
	// JoinClusterLabel, on a join token's Secret and kube-system Role, names
	// the cluster it joins, so a new token or Unjoin revokes the old ones.
	JoinClusterLabel = "fleet.jobset.x-k8s.io/join-cluster"
	// JoinCredentialSecret, in the member namespace on the hub, holds the
	// agent's first hub token until a token join takes it.
	JoinCredentialSecret = "jobset-fleet-join"
	joinCredentialKey    = "token"

	// The bootstrap token format (kubeadm's, read by the apiserver).
	bootstrapTokenSecretPrefix = "bootstrap-token-"
	bootstrapTokenType         = corev1.SecretType("bootstrap.kubernetes.io/token")
	bootstrapUserPrefix        = "system:bootstrap:"
	tokenAlphabet              = "0123456789abcdefghijklmnopqrstuvwxyz"
	// tokenPrefix starts an encoded JoinToken (and names its version).
	tokenPrefix = "jft1."
)

// JoinToken is what the member side of a token join needs: the hub as the
// agent reaches it, the cluster's name, and the bootstrap token. Encode
// makes it one string to pass to `join --token`.
type JoinToken struct {
	Server             string    `json:"server"`
	CAData             []byte    `json:"ca,omitempty"`
	ClusterName        string    `json:"cluster"`
	InventoryNamespace string    `json:"inventoryNamespace"`
	BootstrapToken     string    `json:"token"`
	Expires            time.Time `json:"expires"`

	// JoinServer, when set, is the hub as the joining machine reaches it,
	// for the join's own requests; Server stays the agent's.
	JoinServer string `json:"-"`
}

// Encode is the token as one string.
func (t *JoinToken) Encode() string {
	data, _ := json.Marshal(t) // a struct of strings, bytes and times
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(data)
}

// DecodeJoinToken reads a string Encode made.
func DecodeJoinToken(s string) (*JoinToken, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), tokenPrefix)
	if !ok {
		return nil, fmt.Errorf("not a join token (made by `jobset-fleet-agent token create`): it must start with %q", tokenPrefix)
	}
	data, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("join token is damaged (copy it whole): %w", err)
	}
	t := &JoinToken{}
	if err := json.Unmarshal(data, t); err != nil {
		return nil, fmt.Errorf("join token is damaged (copy it whole): %w", err)
	}
	if t.Server == "" || t.ClusterName == "" || t.BootstrapToken == "" {
		return nil, errors.New("join token is incomplete: it lacks the hub server, the cluster name or the bootstrap token")
	}
	return t, nil
}

// RESTConfig is the hub as the token's bearer reaches it (JoinServer, or
// Server).
func (t *JoinToken) RESTConfig() *rest.Config {
	host := t.Server
	if t.JoinServer != "" {
		host = t.JoinServer
	}
	return &rest.Config{Host: host, BearerToken: t.BootstrapToken, TLSClientConfig: rest.TLSClientConfig{CAData: t.CAData}}
}

func (t *JoinToken) id() string {
	id, _, _ := strings.Cut(t.BootstrapToken, ".")
	return id
}

// TokenOptions configure CreateToken.
type TokenOptions struct {
	// TTL is how long the token may be used; default 1h.
	TTL time.Duration
}

// CreateToken prepares the hub side of the member opts names and returns a
// single-use join token for its member side, valid for TTL. It needs hub
// credentials only, and revokes the cluster's earlier tokens. A name
// another cluster holds is found by the member side (which alone knows the
// member's identity), and refused there.
func CreateToken(ctx context.Context, hub client.Client, opts Options, t TokenOptions) (*JoinToken, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	if opts.HubServerURL == "" {
		return nil, errors.New("membership: HubServerURL is required for a join token")
	}
	if opts.Force || opts.ConfirmCopiesStopped {
		return nil, errors.New("membership: a token join takes over no cluster name: use join --force with both kubeconfigs")
	}
	if err := opts.check(); err != nil {
		return nil, err
	}
	if t.TTL <= 0 {
		t.TTL = time.Hour
	}
	if t.TTL > opts.TokenExpiration/2 {
		return nil, fmt.Errorf("membership: the join token's lifetime %s must be at most half the agent token's %s: the agent's first token is minted now and must outlive the join", t.TTL, opts.TokenExpiration)
	}
	if _, err := prepareHub(ctx, hub, opts, ""); err != nil {
		return nil, err
	}
	if err := revokeJoinTokens(ctx, hub, opts); err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	agent, err := agentToken(ctx, hub, opts.memberNamespace(), opts)
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	id, secret := randomString(6), randomString(16)
	expires := time.Now().Add(t.TTL).UTC().Truncate(time.Second)
	for _, obj := range joinerObjects(opts, id, secret, expires, agent) {
		if err := hub.Create(ctx, obj); err != nil {
			if !apierrors.IsAlreadyExists(err) {
				return nil, fmt.Errorf("hub: creating %T %s: %w", obj, client.ObjectKeyFromObject(obj), err)
			}
			// The per-cluster Role and binding from an earlier token:
			// rebind them to this one.
			if err := updateJoiner(ctx, hub, obj); err != nil {
				return nil, fmt.Errorf("hub: %w", err)
			}
		}
	}
	return &JoinToken{
		Server: opts.HubServerURL, CAData: opts.HubCAData, ClusterName: opts.ClusterName,
		InventoryNamespace: opts.InventoryNamespace, BootstrapToken: id + "." + secret, Expires: expires,
	}, nil
}

// joinerObjects are what CreateToken creates for token id: its Secret, the
// agent's credential, and the Roles and bindings of its user.
func joinerObjects(opts Options, id, secret string, expires time.Time, agentToken string) []client.Object {
	user := rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: bootstrapUserPrefix + id}
	labels := map[string]string{JoinClusterLabel: opts.ClusterName}
	secretName := bootstrapTokenSecretPrefix + id
	role := func(ns, name string, rules []rbacv1.PolicyRule) []client.Object {
		meta := metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}
		return []client.Object{
			&rbacv1.Role{ObjectMeta: meta, Rules: rules},
			&rbacv1.RoleBinding{ObjectMeta: meta, Subjects: []rbacv1.Subject{user},
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}},
		}
	}
	objs := []client.Object{&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceSystem, Name: secretName, Labels: labels},
		Type:       bootstrapTokenType,
		StringData: map[string]string{
			"description":                    fmt.Sprintf("jobset-fleet join token for cluster %s", opts.ClusterName),
			"token-id":                       id,
			"token-secret":                   secret,
			"expiration":                     expires.Format(time.RFC3339),
			"usage-bootstrap-authentication": "true",
		},
	}}
	objs = append(objs, role(metav1.NamespaceSystem, JoinerRole+"-"+id, []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "delete"}, ResourceNames: []string{secretName}},
	})...)
	objs = append(objs, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: opts.memberNamespace(), Name: JoinCredentialSecret, Labels: labels},
		StringData: map[string]string{joinCredentialKey: agentToken},
	})
	objs = append(objs, role(opts.memberNamespace(), JoinerRole, []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "delete"}, ResourceNames: []string{JoinCredentialSecret}},
	})...)
	objs = append(objs, role(opts.InventoryNamespace, JoinerRole+"-"+opts.ClusterName, []rbacv1.PolicyRule{
		{APIGroups: []string{clusterinventory.GroupVersion.Group}, Resources: []string{"clusterprofiles"}, Verbs: []string{"get", "patch"}, ResourceNames: []string{opts.ClusterName}},
	})...)
	return objs
}

// updateJoiner points an existing per-cluster Role or RoleBinding at a new
// token's user.
func updateJoiner(ctx context.Context, hub client.Client, obj client.Object) error {
	switch want := obj.(type) {
	case *rbacv1.Role:
		have := &rbacv1.Role{}
		if err := hub.Get(ctx, client.ObjectKeyFromObject(want), have); err != nil {
			return err
		}
		have.Rules, have.Labels = want.Rules, want.Labels
		return hub.Update(ctx, have)
	case *corev1.Secret:
		have := &corev1.Secret{}
		if err := hub.Get(ctx, client.ObjectKeyFromObject(want), have); err != nil {
			return err
		}
		have.Data, have.StringData, have.Labels = nil, want.StringData, want.Labels
		return hub.Update(ctx, have)
	case *rbacv1.RoleBinding:
		have := &rbacv1.RoleBinding{}
		if err := hub.Get(ctx, client.ObjectKeyFromObject(want), have); err != nil {
			return err
		}
		if have.RoleRef != want.RoleRef {
			if err := hub.Delete(ctx, have); client.IgnoreNotFound(err) != nil {
				return err
			}
			return hub.Create(ctx, want)
		}
		have.Subjects, have.Labels = want.Subjects, want.Labels
		return hub.Update(ctx, have)
	default:
		return fmt.Errorf("%T %s already exists", obj, client.ObjectKeyFromObject(obj))
	}
}

// revokeJoinTokens deletes the cluster's join tokens (their Secrets and
// kube-system Roles) and unbinds its joiner Roles elsewhere.
func revokeJoinTokens(ctx context.Context, hub client.Client, opts Options) error {
	sel := client.MatchingLabels{JoinClusterLabel: opts.ClusterName}
	var errs []error
	var secrets corev1.SecretList
	if err := hub.List(ctx, &secrets, client.InNamespace(metav1.NamespaceSystem), sel); err != nil {
		return fmt.Errorf("listing join tokens: %w", err)
	}
	for i := range secrets.Items {
		errs = append(errs, deleteIfExists(ctx, hub, &secrets.Items[i]))
	}
	for _, list := range []client.ObjectList{&rbacv1.RoleList{}, &rbacv1.RoleBindingList{}} {
		if err := hub.List(ctx, list, client.InNamespace(metav1.NamespaceSystem), sel); err != nil {
			return fmt.Errorf("listing join token Roles: %w", err)
		}
		switch l := list.(type) {
		case *rbacv1.RoleList:
			for i := range l.Items {
				errs = append(errs, deleteIfExists(ctx, hub, &l.Items[i]))
			}
		case *rbacv1.RoleBindingList:
			for i := range l.Items {
				errs = append(errs, deleteIfExists(ctx, hub, &l.Items[i]))
			}
		}
	}
	return errors.Join(errs...)
}

// deleteJoiner removes everything of the cluster's join tokens (Unjoin).
func deleteJoiner(ctx context.Context, hub client.Client, opts Options) error {
	errs := []error{revokeJoinTokens(ctx, hub, opts),
		deleteIfExists(ctx, hub, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: opts.memberNamespace(), Name: JoinCredentialSecret}})}
	for _, key := range []types.NamespacedName{
		{Namespace: opts.memberNamespace(), Name: JoinerRole},
		{Namespace: opts.InventoryNamespace, Name: JoinerRole + "-" + opts.ClusterName},
	} {
		meta := metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}
		errs = append(errs, deleteIfExists(ctx, hub, &rbacv1.RoleBinding{ObjectMeta: meta}), deleteIfExists(ctx, hub, &rbacv1.Role{ObjectMeta: meta}))
	}
	return errors.Join(errs...)
}

// JoinWithToken is the member side of a token join: with member credentials
// and the token alone, it checks the member, takes the agent's credential
// (once: the first join that deletes it gets it), records the member's
// cluster ID on its ClusterProfile, installs the member side as Join does,
// and revokes the token. It returns the agent's hub kubeconfig. A join that
// fails before it takes the credential can be run again with the same
// token; after, it needs a new one.
func JoinWithToken(ctx context.Context, member client.Client, t *JoinToken, opts Options) ([]byte, error) {
	opts.ClusterName, opts.InventoryNamespace = t.ClusterName, t.InventoryNamespace
	opts.HubServerURL, opts.HubCAData = t.Server, t.CAData
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	if err := opts.check(); err != nil {
		return nil, err
	}
	hub, err := client.New(t.RESTConfig(), client.Options{Scheme: member.Scheme()})
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	crds, clusterID, err := memberSide(ctx, member, opts)
	if err != nil {
		return nil, err
	}
	cp := &clusterinventory.ClusterProfile{}
	if err := hub.Get(ctx, client.ObjectKey{Namespace: opts.InventoryNamespace, Name: opts.ClusterName}, cp); err != nil {
		return nil, fmt.Errorf("hub: %w", tokenError(t, err))
	}
	if id := cp.Annotations[fleet.ClusterIDAnnotation]; id != "" && id != clusterID {
		return nil, fmt.Errorf("hub: cluster name %q is already joined by another cluster (its ClusterProfile has %s=%s, this member's kube-system UID is %s): "+
			"the hub admin must unjoin it first, or pick another name", opts.ClusterName, fleet.ClusterIDAnnotation, id, clusterID)
	}
	token, err := takeCredential(ctx, hub, t, opts)
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	if cp.Annotations[fleet.ClusterIDAnnotation] == "" {
		// With the profile's resourceVersion: two members racing for one
		// name cannot both record theirs.
		patch := client.MergeFromWithOptions(cp.DeepCopy(), client.MergeFromWithOptimisticLock{})
		if cp.Annotations == nil {
			cp.Annotations = map[string]string{}
		}
		cp.Annotations[fleet.ClusterIDAnnotation] = clusterID
		if err := hub.Patch(ctx, cp, patch); err != nil {
			return nil, fmt.Errorf("hub: recording the cluster ID on ClusterProfile %s/%s (the token is spent: ask for a new one): %w", cp.Namespace, cp.Name, tokenError(t, err))
		}
	}
	kubeconfig, err := Kubeconfig(opts.HubServerURL, opts.HubCAData, opts.memberNamespace(), token)
	if err != nil {
		return nil, err
	}
	if err := installMember(ctx, member, opts, crds, kubeconfig); err != nil {
		return nil, fmt.Errorf("%w (the token is spent: ask the hub admin for a new one)", err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceSystem, Name: bootstrapTokenSecretPrefix + t.id()}}
	if err := hub.Delete(ctx, secret); client.IgnoreNotFound(err) != nil {
		return nil, fmt.Errorf("hub: revoking the join token (the member joined; ask the hub admin to delete Secret %s/%s): %w",
			secret.Namespace, secret.Name, tokenError(t, err))
	}
	return kubeconfig, nil
}

// takeCredential reads the agent's credential and deletes its Secret, with
// its UID as precondition: of two joins with one token, one gets it.
func takeCredential(ctx context.Context, hub client.Client, t *JoinToken, opts Options) (string, error) {
	s := &corev1.Secret{}
	key := client.ObjectKey{Namespace: opts.memberNamespace(), Name: JoinCredentialSecret}
	err := hub.Get(ctx, key, s)
	if apierrors.IsNotFound(err) {
		return "", fmt.Errorf("the join token for cluster %s was already used (or revoked by a newer token): ask the hub admin for a new one (`jobset-fleet-agent token create --cluster-name %s`)",
			t.ClusterName, t.ClusterName)
	}
	if err != nil {
		return "", tokenError(t, err)
	}
	if err := hub.Delete(ctx, s, client.Preconditions{UID: &s.UID}); err != nil {
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return "", fmt.Errorf("the join token for cluster %s was used by another join at the same time", t.ClusterName)
		}
		return "", tokenError(t, err)
	}
	return string(s.Data[joinCredentialKey]), nil
}

// tokenError explains the hub's refusal of a join token.
func tokenError(t *JoinToken, err error) error {
	if apierrors.IsUnauthorized(err) {
		when := "it expired at " + t.Expires.Format(time.RFC3339)
		if time.Now().Before(t.Expires) {
			when = "it was already used, revoked by a newer token, or the hub does not accept bootstrap tokens (--enable-bootstrap-token-auth)"
		}
		return fmt.Errorf("the hub refused the join token for cluster %s (%s): ask the hub admin for a new one (`jobset-fleet-agent token create --cluster-name %s`): %w",
			t.ClusterName, when, t.ClusterName, err)
	}
	return err
}

// randomString is n characters of tokenAlphabet from crypto/rand, each
// equally likely (bytes past the last whole multiple of the alphabet's
// size are drawn again).
func randomString(n int) string {
	limit := byte(256 / len(tokenAlphabet) * len(tokenAlphabet))
	out := make([]byte, 0, n)
	b := make([]byte, 1)
	for len(out) < n {
		if _, err := rand.Read(b); err != nil {
			panic(err) // crypto/rand never fails on supported platforms
		}
		if b[0] < limit {
			out = append(out, tokenAlphabet[int(b[0])%len(tokenAlphabet)])
		}
	}
	return string(out)
}
