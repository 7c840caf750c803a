package membership

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

// recordedNamespaceUIDs are the member namespace UIDs an earlier Join
// recorded (MemberNamespaceUIDAnnotation) on the member's ClusterProfile cp
// (nil when there is none) and on its Role in the inventory namespace.
// Either is proof: only the hub's admins write them, and the Role outlives
// a profile deleted by hand.
func recordedNamespaceUIDs(ctx context.Context, hub client.Client, cp *clusterinventory.ClusterProfile, opts Options) ([]types.UID, error) {
	var uids []types.UID
	if cp != nil && cp.Annotations[MemberNamespaceUIDAnnotation] != "" {
		uids = append(uids, types.UID(cp.Annotations[MemberNamespaceUIDAnnotation]))
	}
	role := &rbacv1.Role{}
	switch err := hub.Get(ctx, client.ObjectKey{Namespace: opts.InventoryNamespace, Name: opts.inventoryRole()}, role); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("reading Role %s/%s: %w", opts.InventoryNamespace, opts.inventoryRole(), err)
	case role.Annotations[MemberNamespaceUIDAnnotation] != "":
		uids = append(uids, types.UID(role.Annotations[MemberNamespaceUIDAnnotation]))
	}
	return uids, nil
}

// ensureMemberNamespace creates the member namespace and returns its UID.
// An existing one is used only when its UID is one Join recorded: its
// CreatedByLabel proves nothing, since whoever may create namespaces may
// set it, and would then see the agent's dispatches and mint its tokens.
// With legacyLabelled (a member joined before UIDs were recorded, whose
// profile names the same cluster) the label is accepted once, and the UID
// recorded from then on.
func ensureMemberNamespace(ctx context.Context, hub client.Client, opts Options, owned []types.UID, legacyLabelled bool) (types.UID, error) {
	name := opts.memberNamespace()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{CreatedByLabel: createdByValue}}}
	err := hub.Create(ctx, ns)
	if err == nil {
		return ns.UID, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("namespace %s: %w", name, err)
	}
	if err := hub.Get(ctx, client.ObjectKey{Name: name}, ns); err != nil {
		return "", fmt.Errorf("namespace %s: %w", name, err)
	}
	if ns.DeletionTimestamp != nil {
		return "", fmt.Errorf("namespace %s is still being deleted (an earlier unjoin; it stays until the member's dispatches are released: "+
			"once the member's copies are stopped, run `jobset-fleet-agent unjoin --cluster-name %s %s`): join again once it is gone",
			name, opts.ClusterName, ConfirmCopiesStoppedFlag)
	}
	if slices.Contains(owned, ns.UID) || (legacyLabelled && ns.Labels[CreatedByLabel] == createdByValue) {
		return ns.UID, nil
	}
	return "", fmt.Errorf("namespace %s exists but was not created by a join of cluster %q (its UID %s is not the one recorded in %s on ClusterProfile %s/%s or Role %s/%s; a label is no proof): "+
		"refusing to take it over; delete it or choose another cluster name",
		name, opts.ClusterName, ns.UID, MemberNamespaceUIDAnnotation, opts.InventoryNamespace, opts.ClusterName, opts.InventoryNamespace, opts.inventoryRole())
}

// legacyJoined reports whether the member was joined before Join recorded
// namespace UIDs: nothing is recorded, and its profile names this very
// cluster, so its labelled namespace is the one that join created.
func legacyJoined(owned []types.UID, cp *clusterinventory.ClusterProfile, clusterID string) bool {
	return len(owned) == 0 && cp != nil && clusterID != "" && cp.Annotations[fleet.ClusterIDAnnotation] == clusterID
}

// deleteMemberNamespace deletes the member namespace if its UID is one Join
// recorded (or, legacyLabelled, if it carries Join's label).
func deleteMemberNamespace(ctx context.Context, hub client.Client, name string, owned []types.UID, legacyLabelled bool) error {
	ns := &corev1.Namespace{}
	if err := hub.Get(ctx, client.ObjectKey{Name: name}, ns); err != nil {
		return client.IgnoreNotFound(err)
	}
	ours := slices.Contains(owned, ns.UID) || (legacyLabelled && ns.Labels[CreatedByLabel] == createdByValue)
	if !ours || ns.DeletionTimestamp != nil {
		return nil
	}
	if err := hub.Delete(ctx, ns, client.Preconditions{UID: &ns.UID}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting namespace %s: %w", name, err)
	}
	return nil
}
