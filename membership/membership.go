// Package membership joins a member cluster to the fleet and removes it
// again. Both operations are idempotent: running them twice is the same as
// running them once, and a second Join repairs whatever drifted.
//
// Join creates, on the hub: the inventory namespace (if missing), the
// member's ClusterProfile (recording the member's identity, the UID of its
// kube-system namespace, and the UID of its member namespace), its
// namespace fleet-member-<name>, the agent's ServiceAccount there, the Roles
// that limit the agent to that namespace, to reading its own ClusterProfile
// and writing that profile's status, and a short-lived token (TokenRequest)
// the agent refreshes itself. On the member: the fleet's CRDs, the
// namespace jobset-fleet-system and the Secret hub-kubeconfig the agent
// reads its hub credentials from.
//
// Join never adopts a namespace it did not create: a label anyone who can
// create namespaces could set is no proof, so Join records the UID of the
// member namespace it created (MemberNamespaceUIDAnnotation, on the
// ClusterProfile and on the agent's Role in the inventory namespace, both
// writable only by the hub's admins) and accepts an existing member
// namespace only with that UID; Unjoin deletes only such a namespace.
//
// One cluster name is held by one cluster. Join refuses a name another
// cluster joined with; with Force it takes the name over, and revokes the
// old cluster: the agent's ServiceAccount is deleted and created anew, so
// every token of the old agent stops authenticating. A takeover never hands
// the old cluster's running work to the new one: dispatches the old agent
// holds and that are not confirmed stopped make Join refuse, unless the
// operator states with ConfirmCopiesStopped that their copies are stopped;
// Join then records that statement on each (DispatchDeleted=True, reason
// ReasonStopConfirmed), deletes and releases it, all before the new
// cluster receives its token.
//
// Unjoin with KeepWorkloads leaves the member's copies running and the
// member's dispatches held: the hub runs those JobSets elsewhere only after
// proof that the copies stopped, which `unjoin --confirm-copies-stopped`
// gives (see Unjoin).
//
// The CRDs are embedded in the binary (package config/crd, the files `make
// manifests` generates), so join needs no checkout.
package membership

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/config/crd"
)

// Names of what Join creates.
const (
	// AgentServiceAccount is the agent's identity on the hub, in the member
	// namespace.
	AgentServiceAccount = "agent"
	// AgentTokenSecret held the agent's long-lived token on the hub before
	// Join used TokenRequest; Unjoin still removes it.
	AgentTokenSecret = "agent-token"
	// AgentRole names the agent's Role and RoleBinding in the member
	// namespace; in the inventory namespace they are AgentRole-<cluster>.
	AgentRole = "jobset-fleet-agent"
	// CreatedByLabel marks namespaces Join created, which Unjoin may delete.
	CreatedByLabel = "fleet.jobset.x-k8s.io/created-by"
	createdByValue = "join"
	// installedByLabel marks the agent namespace the fleet's own install
	// (config/agent) creates: Join may use it, Unjoin leaves it.
	installedByLabel = "app.kubernetes.io/name"
	installedByValue = "jobset-fleet"
	// FieldOwner is the server-side-apply field manager of the CRDs.
	FieldOwner = "jobset-fleet-join"
	// MemberNamespaceUIDAnnotation records the UID of the member namespace
	// Join created, on the member's ClusterProfile and on its Role
	// AgentRole-<cluster> in the inventory namespace (which survives an
	// accidental deletion of the profile). Only the hub's admins write
	// either; a namespace of the same name with another UID is not Join's.
	MemberNamespaceUIDAnnotation = "fleet.jobset.x-k8s.io/member-namespace-uid"
	// ConfirmCopiesStoppedFlag is the command-line flag of
	// Options.ConfirmCopiesStopped, named in Join's and Unjoin's messages.
	ConfirmCopiesStoppedFlag = "--confirm-copies-stopped"
)

// Options configure Join and Unjoin.
type Options struct {
	// ClusterName is the member's name (required): its ClusterProfile and
	// its hub namespace fleet-member-<ClusterName>.
	ClusterName string
	// InventoryNamespace holds the ClusterProfiles; default fleet-system.
	InventoryNamespace string
	// Labels are added to the ClusterProfile (for cluster selectors).
	Labels map[string]string
	// DisplayName is the ClusterProfile's spec.displayName; default ClusterName.
	DisplayName string

	// HubServerURL is the hub apiserver address as the agent reaches it
	// (required by Join); HubCAData its CA bundle (empty: system roots).
	HubServerURL string
	HubCAData    []byte
	// AllowLoopbackHubServer accepts a HubServerURL on a loopback address,
	// which the agent's Pods reach only when the hub runs on the member's
	// own host or network namespace (AllowLoopbackHubServerFlag).
	AllowLoopbackHubServer bool

	// CRDDir holds the CRD manifests installed on the member; empty: those
	// embedded in the binary. SkipCRDs installs none.
	CRDDir   string
	SkipCRDs bool

	// TokenExpiration is the lifetime of the agent's hub token (TokenRequest);
	// default 24h. The agent requests a new one for itself before 80% of it
	// has passed, so it needs no new join. The hub may shorten it
	// (--service-account-max-token-expiration) and refuses less than 10m.
	TokenExpiration time.Duration
	// AllowedNamespaces, when not empty, are the only hub namespaces whose
	// JobSets may run on the member (AllowedNamespacesAnnotation on the
	// profile); empty removes the restriction.
	AllowedNamespaces []string
	// Force lets Join take over a cluster name that a different cluster
	// (another kube-system UID) joined with: the agent's ServiceAccount is
	// recreated, so the old cluster's agent tokens stop working. Dispatches
	// the old agent may still run block the takeover unless
	// ConfirmCopiesStopped. For Unjoin, Force deletes the fleet's JobSets
	// that still run on the member (without it, or Drain, Unjoin refuses).
	Force bool
	// ConfirmCopiesStopped is the operator's statement that the copies of
	// the member's remaining dispatches no longer run (stopped by hand, or
	// the cluster is gone). Join (with Force) and Unjoin then mark each such
	// dispatch DispatchDeleted=True, reason fleet ReasonStopConfirmed,
	// delete it and release the agent's finalizer: proof on which the hub
	// runs those JobSets elsewhere. Unjoin with it needs no member client
	// and touches nothing on the member.
	ConfirmCopiesStopped bool

	// Unjoin only: RemoveCRDs also deletes the CRDs from the member (and with
	// them every JobSet there); KeepWorkloads leaves the fleet's JobSets on
	// the member running and their dispatches held by the agent's
	// finalizer, so the hub runs them nowhere else until an Unjoin with
	// ConfirmCopiesStopped (or without KeepWorkloads) proves them stopped.
	RemoveCRDs    bool
	KeepWorkloads bool
	// WaitTimeout bounds how long Unjoin waits for the member's fleet
	// JobSets to be gone, Jobs included; default 5m.
	WaitTimeout time.Duration
	// Drain, for Unjoin, drains the member first (Drain with these
	// options: the hub moves what has not started, the rest finishes) and
	// unjoins once no dispatch is left.
	Drain *DrainOptions
	// Progress receives what Unjoin waits for, as it changes; nil: nothing.
	Progress io.Writer
}

func (o *Options) defaults() error {
	if o.ClusterName == "" {
		return errors.New("membership: ClusterName is required")
	}
	if o.InventoryNamespace == "" {
		o.InventoryNamespace = fleet.DefaultInventoryNamespace
	}
	if o.DisplayName == "" {
		o.DisplayName = o.ClusterName
	}
	if o.TokenExpiration == 0 {
		o.TokenExpiration = 24 * time.Hour
	}
	if o.WaitTimeout == 0 {
		o.WaitTimeout = 5 * time.Minute
	}
	return nil
}

// memberSide reads what a join needs of the member before it writes
// anything: the CRDs it installs there, checked against the member's, and
// the member's identity.
func memberSide(ctx context.Context, member client.Client, opts Options) ([]*unstructured.Unstructured, string, error) {
	crds, err := opts.crds()
	if err != nil {
		return nil, "", err
	}
	clusterID, err := ClusterID(ctx, member)
	if err != nil {
		return nil, "", fmt.Errorf("member: %w", err)
	}
	if err := checkMemberCRDs(ctx, member, crds); err != nil {
		return nil, "", fmt.Errorf("member: %w", err)
	}
	return crds, clusterID, nil
}

// crds are the CRDs Join installs on the member (none with SkipCRDs).
func (o *Options) crds() ([]*unstructured.Unstructured, error) {
	if o.SkipCRDs {
		return nil, nil
	}
	return readCRDs(o.CRDDir)
}

func (o *Options) memberNamespace() string { return fleet.MemberNamespace(o.ClusterName) }
func (o *Options) inventoryRole() string   { return AgentRole + "-" + o.ClusterName }

// AgentRules are what the agent may do in its member namespace on the hub:
// run its dispatches, renew its heartbeat, and request new tokens for its
// own ServiceAccount.
func AgentRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{fleet.GroupVersion.Group}, Resources: []string{"jobsetdispatches"}, Verbs: []string{"get", "list", "watch", "update", "patch"}},
		{APIGroups: []string{fleet.GroupVersion.Group}, Resources: []string{"jobsetdispatches/status", "jobsetdispatches/finalizers"}, Verbs: []string{"update", "patch"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "create", "update"}},
		{APIGroups: []string{"", "events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"serviceaccounts/token"}, Verbs: []string{"create"}, ResourceNames: []string{AgentServiceAccount}},
		// The relay connection for logs and exec (hub/relay).
		{APIGroups: []string{fleet.RelayGroup}, Resources: []string{fleet.RelayMembers + "/" + fleet.RelayAttach}, Verbs: []string{"create"}},
	}
}

// ProfileRules are what the agent may do in the inventory namespace: read
// its own ClusterProfile and write that profile's status — never its labels
// (what cluster selectors match) or spec.
func ProfileRules(cluster string) []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{
			APIGroups:     []string{clusterinventory.GroupVersion.Group},
			Resources:     []string{"clusterprofiles"},
			Verbs:         []string{"get"},
			ResourceNames: []string{cluster},
		},
		{
			APIGroups:     []string{clusterinventory.GroupVersion.Group},
			Resources:     []string{"clusterprofiles/status"},
			Verbs:         []string{"get", "update", "patch"},
			ResourceNames: []string{cluster},
		},
	}
}

// Join makes the member part of the fleet and returns the agent's hub
// kubeconfig (also stored in the member's hub-kubeconfig Secret). It checks
// what it can before writing anything (the cluster name, the hub address,
// the member's CRDs; Preflight adds the versions).
func Join(ctx context.Context, hub, member client.Client, opts Options) ([]byte, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	if opts.HubServerURL == "" {
		return nil, errors.New("membership: HubServerURL is required to join")
	}
	if opts.ConfirmCopiesStopped && !opts.Force {
		return nil, fmt.Errorf("membership: %s is a statement about the copies of the cluster a join --force takes over; without --force there is nothing to confirm", ConfirmCopiesStoppedFlag)
	}
	if err := opts.check(); err != nil {
		return nil, err
	}
	crds, clusterID, err := memberSide(ctx, member, opts)
	if err != nil {
		return nil, err
	}
	if _, err := prepareHub(ctx, hub, opts, clusterID); err != nil {
		return nil, err
	}
	token, err := agentToken(ctx, hub, opts.memberNamespace(), opts)
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	kubeconfig, err := Kubeconfig(opts.HubServerURL, opts.HubCAData, opts.memberNamespace(), token)
	if err != nil {
		return nil, err
	}
	if err := installMember(ctx, member, opts, crds, kubeconfig); err != nil {
		return nil, err
	}
	return kubeconfig, nil
}

// prepareHub is Join's hub side, all but the agent's token: the inventory
// namespace, the member namespace, the agent's ServiceAccount and Roles,
// and the ClusterProfile naming clusterID. An empty clusterID (a token
// join, whose hub side runs before the member is known) leaves the
// profile's cluster ID as it is; the member side records it.
func prepareHub(ctx context.Context, hub client.Client, opts Options, clusterID string) (types.UID, error) {
	memberNS := opts.memberNamespace()
	if err := ensureNamespace(ctx, hub, opts.InventoryNamespace, true); err != nil {
		return "", fmt.Errorf("hub: %w", err)
	}
	cp := &clusterinventory.ClusterProfile{}
	takeover := false
	switch err := hub.Get(ctx, client.ObjectKey{Namespace: opts.InventoryNamespace, Name: opts.ClusterName}, cp); {
	case apierrors.IsNotFound(err):
		cp = nil
	case err != nil:
		return "", fmt.Errorf("hub: reading ClusterProfile %s/%s: %w", opts.InventoryNamespace, opts.ClusterName, err)
	default:
		id := cp.Annotations[fleet.ClusterIDAnnotation]
		takeover = clusterID != "" && id != "" && id != clusterID
		if takeover && !opts.Force {
			return "", fmt.Errorf("hub: cluster name %q is already joined by another cluster (ClusterProfile %s/%s has %s=%s, this member's kube-system UID is %s): unjoin it first, pick another name, or force the takeover",
				opts.ClusterName, opts.InventoryNamespace, opts.ClusterName, fleet.ClusterIDAnnotation, id, clusterID)
		}
	}
	if takeover && !opts.ConfirmCopiesStopped {
		// Refuse before changing anything: the operator may have named the
		// wrong cluster.
		if err := refuseUnconfirmed(ctx, hub, memberNS, opts.ClusterName); err != nil {
			return "", fmt.Errorf("hub: %w", err)
		}
	}
	owned, err := recordedNamespaceUIDs(ctx, hub, cp, opts)
	if err != nil {
		return "", fmt.Errorf("hub: %w", err)
	}
	nsUID, err := ensureMemberNamespace(ctx, hub, opts, owned, legacyJoined(owned, cp, clusterID))
	if err != nil {
		return "", fmt.Errorf("hub: %w", err)
	}
	oldClusterID := ""
	if cp != nil {
		oldClusterID = cp.Annotations[fleet.ClusterIDAnnotation]
	}
	// Record the namespace as Join's at once, so a join that fails later
	// still accepts it when run again.
	subject := agentSubject(opts)
	if err := ensureRole(ctx, hub, opts.InventoryNamespace, opts.inventoryRole(), ProfileRules(opts.ClusterName), subject,
		map[string]string{MemberNamespaceUIDAnnotation: string(nsUID)}); err != nil {
		return "", fmt.Errorf("hub: %w", err)
	}
	if takeover {
		if err := takeOver(ctx, hub, memberNS, oldClusterID, opts); err != nil {
			return "", fmt.Errorf("hub: taking over cluster name %q: %w", opts.ClusterName, err)
		}
	}
	// The profile names the new cluster only once the old one is revoked,
	// so a takeover that failed is a takeover again when run again.
	cp = &clusterinventory.ClusterProfile{ObjectMeta: metav1.ObjectMeta{Namespace: opts.InventoryNamespace, Name: opts.ClusterName}}
	if _, err := controllerutil.CreateOrUpdate(ctx, hub, cp, func() error {
		setProfile(cp, opts, clusterID, nsUID)
		return nil
	}); err != nil {
		return "", fmt.Errorf("hub: ClusterProfile %s/%s: %w", cp.Namespace, cp.Name, err)
	}
	sa := agentServiceAccount(opts)
	if err := hub.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("hub: ServiceAccount %s/%s: %w", memberNS, sa.Name, err)
	}
	if err := ensureRole(ctx, hub, memberNS, AgentRole, AgentRules(), subject, nil); err != nil {
		return "", fmt.Errorf("hub: %w", err)
	}
	return nsUID, nil
}

func agentSubject(opts Options) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: opts.memberNamespace(), Name: AgentServiceAccount}
}

func agentServiceAccount(opts Options) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: opts.memberNamespace(), Name: AgentServiceAccount}}
}

// setProfile makes cp the member's profile: the fleet's labels and
// manager, opts' labels, display name and allowed namespaces, and the
// cluster and member namespace it was joined with (clusterID "": kept).
func setProfile(cp *clusterinventory.ClusterProfile, opts Options, clusterID string, nsUID types.UID) {
	if cp.Labels == nil {
		cp.Labels = map[string]string{}
	}
	maps.Copy(cp.Labels, opts.Labels)
	cp.Labels[clusterinventory.LabelClusterManagerKey] = fleet.ClusterManagerName
	if cp.Annotations == nil {
		cp.Annotations = map[string]string{}
	}
	if clusterID != "" {
		cp.Annotations[fleet.ClusterIDAnnotation] = clusterID
	}
	if nsUID != "" {
		cp.Annotations[MemberNamespaceUIDAnnotation] = string(nsUID)
	}
	if len(opts.AllowedNamespaces) > 0 {
		cp.Annotations[fleet.AllowedNamespacesAnnotation] = strings.Join(opts.AllowedNamespaces, ",")
	} else {
		delete(cp.Annotations, fleet.AllowedNamespacesAnnotation)
	}
	cp.Spec.DisplayName = opts.DisplayName
	cp.Spec.ClusterManager.Name = fleet.ClusterManagerName
}

// installMember is Join's member side: the CRDs, the agent's namespace and
// the Secret with its hub kubeconfig and cluster name.
func installMember(ctx context.Context, member client.Client, opts Options, crds []*unstructured.Unstructured, kubeconfig []byte) error {
	for _, crd := range crds {
		if err := member.Apply(ctx, client.ApplyConfigurationFromUnstructured(crd), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
			return fmt.Errorf("member: applying CRD %s: %w", crd.GetName(), err)
		}
	}
	if err := ensureNamespace(ctx, member, fleet.SystemNamespace, false); err != nil {
		return fmt.Errorf("member: %w", err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: fleet.SystemNamespace, Name: fleet.HubKubeconfigSecret}}
	if _, err := controllerutil.CreateOrUpdate(ctx, member, secret, func() error {
		secret.Data = hubKubeconfigData(opts, kubeconfig)
		return nil
	}); err != nil {
		return fmt.Errorf("member: Secret %s/%s: %w", fleet.SystemNamespace, fleet.HubKubeconfigSecret, err)
	}
	return nil
}

func hubKubeconfigData(opts Options, kubeconfig []byte) map[string][]byte {
	return map[string][]byte{fleet.HubKubeconfigKey: kubeconfig, fleet.ClusterNameKey: []byte(opts.ClusterName)}
}

// Kubeconfig is a kubeconfig for the agent: the hub, a token, and the
// member namespace as default namespace.
func Kubeconfig(server string, caData []byte, namespace, token string) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["hub"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caData}
	cfg.AuthInfos["agent"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["agent@hub"] = &clientcmdapi.Context{Cluster: "hub", AuthInfo: "agent", Namespace: namespace}
	cfg.CurrentContext = "agent@hub"
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, fmt.Errorf("writing agent kubeconfig: %w", err)
	}
	return data, nil
}

// agentToken requests a token for the agent's ServiceAccount with a
// bounded lifetime. The agent requests the next ones itself.
func agentToken(ctx context.Context, hub client.Client, ns string, opts Options) (string, error) {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: AgentServiceAccount}}
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: ptr.To(int64(opts.TokenExpiration.Seconds())),
	}}
	if err := hub.SubResource("token").Create(ctx, sa, tr); err != nil {
		return "", fmt.Errorf("requesting a token for ServiceAccount %s/%s: %w", ns, AgentServiceAccount, err)
	}
	return tr.Status.Token, nil
}

// ClusterID is the member's identity: the UID of its kube-system namespace,
// which lives as long as the cluster.
func ClusterID(ctx context.Context, member client.Reader) (string, error) {
	ns := &corev1.Namespace{}
	if err := member.Get(ctx, client.ObjectKey{Name: metav1.NamespaceSystem}, ns); err != nil {
		return "", fmt.Errorf("reading namespace %s for the cluster ID: %w", metav1.NamespaceSystem, err)
	}
	return string(ns.UID), nil
}

// ensureNamespace creates a namespace labelled as Join's. An existing one
// is used only when Join created it (or, for the member's agent namespace,
// the fleet's install did), or when shared is set: Join never takes over a
// namespace someone else uses.
func ensureNamespace(ctx context.Context, c client.Client, name string, shared bool) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{CreatedByLabel: createdByValue}}}
	err := c.Create(ctx, ns)
	if err == nil || !apierrors.IsAlreadyExists(err) {
		if err != nil {
			return fmt.Errorf("namespace %s: %w", name, err)
		}
		return nil
	}
	if shared {
		return nil
	}
	if err := c.Get(ctx, client.ObjectKey{Name: name}, ns); err != nil {
		return fmt.Errorf("namespace %s: %w", name, err)
	}
	if ns.Labels[CreatedByLabel] == createdByValue || (name == fleet.SystemNamespace && ns.Labels[installedByLabel] == installedByValue) {
		return nil
	}
	return fmt.Errorf("namespace %s exists and was not created by join (no label %s=%s): refusing to take it over; delete it or choose another cluster name", name, CreatedByLabel, createdByValue)
}

func ensureRole(ctx context.Context, c client.Client, ns, name string, rules []rbacv1.PolicyRule, subject rbacv1.Subject, annotations map[string]string) error {
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if _, err := controllerutil.CreateOrUpdate(ctx, c, role, func() error {
		role.Rules = rules
		if len(annotations) > 0 {
			if role.Annotations == nil {
				role.Annotations = map[string]string{}
			}
			maps.Copy(role.Annotations, annotations)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("Role %s/%s: %w", ns, name, err) //nolint:staticcheck // ST1005: Role is the kind; callers wrap it in "hub: %w"
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	roleRef := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}
	if err := c.Get(ctx, client.ObjectKeyFromObject(rb), rb); err == nil && rb.RoleRef != roleRef {
		// roleRef is immutable: replace a binding that points elsewhere.
		if err := c.Delete(ctx, rb); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("RoleBinding %s/%s: %w", ns, name, err)
		}
		rb = &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	}
	if _, err := controllerutil.CreateOrUpdate(ctx, c, rb, func() error {
		rb.RoleRef = roleRef
		rb.Subjects = []rbacv1.Subject{subject}
		return nil
	}); err != nil {
		return fmt.Errorf("RoleBinding %s/%s: %w", ns, name, err)
	}
	return nil
}

// readCRDs returns the CRDs installed on a member: those embedded in the
// binary, or those in dir when set.
func readCRDs(dir string) ([]*unstructured.Unstructured, error) {
	if dir == "" {
		return crd.Member()
	}
	return crd.Read(os.DirFS(dir))
}
