package membership

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	fleetv1alpha1 "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// Unjoin removes what Join created. The member's CRDs stay unless
// RemoveCRDs; the inventory namespace, shared by every member, stays. The
// fleet's JobSets on the member are deleted unless KeepWorkloads: no agent
// would report on them any more. Dispatches left in the member namespace
// are released (the agent's finalizer removed) so the namespace can go.
func Unjoin(ctx context.Context, hub, member client.Client, opts Options) error {
	if err := opts.defaults(); err != nil {
		return err
	}
	memberNS := opts.memberNamespace()
	var errs []error

	// Member.
	if !opts.KeepWorkloads {
		errs = append(errs, deleteFleetJobSets(ctx, member, memberNS))
	}
	errs = append(errs, deleteIfExists(ctx, member, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: AgentNamespace, Name: KubeconfigSecret}}))
	errs = append(errs, deleteNamespaceIfCreated(ctx, member, AgentNamespace))
	if opts.RemoveCRDs {
		crds, err := readCRDs(opts.CRDDir)
		errs = append(errs, err)
		for _, crd := range crds {
			errs = append(errs, deleteIfExists(ctx, member, &apiextensionsv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: crd.GetName()}}))
		}
	}

	// Hub.
	errs = append(errs, releaseDispatches(ctx, hub, memberNS))
	for _, obj := range []client.Object{
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: opts.InventoryNamespace, Name: opts.inventoryRole()}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: opts.InventoryNamespace, Name: opts.inventoryRole()}},
		&clusterinventory.ClusterProfile{ObjectMeta: metav1.ObjectMeta{Namespace: opts.InventoryNamespace, Name: opts.ClusterName}},
		// Everything below also goes with the namespace; deleting it
		// explicitly revokes the agent at once, even where no namespace
		// controller runs.
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: memberNS, Name: AgentRole}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: memberNS, Name: AgentRole}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: memberNS, Name: AgentTokenSecret}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: memberNS, Name: AgentServiceAccount}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: memberNS}},
	} {
		errs = append(errs, deleteIfExists(ctx, hub, obj))
	}
	return errors.Join(errs...)
}

func deleteIfExists(ctx context.Context, c client.Client, obj client.Object) error {
	if err := c.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting %T %s: %w", obj, client.ObjectKeyFromObject(obj), err)
	}
	return nil
}

func deleteNamespaceIfCreated(ctx context.Context, c client.Client, name string) error {
	ns := &corev1.Namespace{}
	if err := c.Get(ctx, client.ObjectKey{Name: name}, ns); err != nil {
		return client.IgnoreNotFound(err)
	}
	if ns.Labels[CreatedByLabel] != createdByValue {
		return nil
	}
	return deleteIfExists(ctx, c, ns)
}

// deleteFleetJobSets deletes the member JobSets made for dispatches of
// memberNS. A member without the JobSet CRD has none.
func deleteFleetJobSets(ctx context.Context, member client.Client, memberNS string) error {
	var list v1alpha2.JobSetList
	if err := member.List(ctx, &list); err != nil {
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			return nil
		}
		return fmt.Errorf("listing member JobSets: %w", err)
	}
	for i := range list.Items {
		js := &list.Items[i]
		key := js.Annotations[fleetv1alpha1.DispatchAnnotation]
		if !strings.HasPrefix(key, memberNS+"/") {
			continue
		}
		if err := member.Delete(ctx, js, client.PropagationPolicy(metav1.DeletePropagationForeground)); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting member JobSet %s: %w", client.ObjectKeyFromObject(js), err)
		}
	}
	return nil
}

// releaseDispatches removes the agent's finalizer from the dispatches left
// in memberNS: with the agent gone nobody else would.
func releaseDispatches(ctx context.Context, hub client.Client, memberNS string) error {
	var list fleetv1alpha1.JobSetDispatchList
	if err := hub.List(ctx, &list, client.InNamespace(memberNS)); err != nil {
		return fmt.Errorf("listing dispatches in %s: %w", memberNS, err)
	}
	for i := range list.Items {
		d := &list.Items[i]
		if !controllerutil.ContainsFinalizer(d, fleetv1alpha1.AgentFinalizer) {
			continue
		}
		patch := client.MergeFromWithOptions(d.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.RemoveFinalizer(d, fleetv1alpha1.AgentFinalizer)
		if err := hub.Patch(ctx, d, patch); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("releasing dispatch %s: %w", client.ObjectKeyFromObject(d), err)
		}
	}
	return nil
}
