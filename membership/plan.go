package membership

import (
	"fmt"
	"io"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/yaml"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

// Redacted stands for a credential a dry run does not mint.
const Redacted = "<redacted: minted by the join>"

// Plan is what a join writes, for --dry-run: the objects on the hub and on
// the member, as the join builds them, credentials redacted.
type Plan struct {
	Hub, Member []client.Object
}

// PlanJoin is the plan of Join (and, with clusterID "", of CreateToken's
// hub side with token; of JoinWithToken's member side with hub false).
func PlanJoin(opts Options, clusterID string) (Plan, error) {
	if err := opts.defaults(); err != nil {
		return Plan{}, err
	}
	crds, err := opts.crds()
	if err != nil {
		return Plan{}, err
	}
	var p Plan
	memberNS := opts.memberNamespace()
	role := func(ns, name string, rules []rbacv1.PolicyRule, annotations map[string]string) []client.Object {
		meta := metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations}
		return []client.Object{
			&rbacv1.Role{ObjectMeta: meta, Rules: rules},
			&rbacv1.RoleBinding{ObjectMeta: meta, Subjects: []rbacv1.Subject{agentSubject(opts)},
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}},
		}
	}
	nsUID := "<UID of namespace " + memberNS + ">"
	p.Hub = append(p.Hub,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: opts.InventoryNamespace, Labels: map[string]string{CreatedByLabel: createdByValue}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: memberNS, Labels: map[string]string{CreatedByLabel: createdByValue}}})
	p.Hub = append(p.Hub, role(opts.InventoryNamespace, opts.inventoryRole(), ProfileRules(opts.ClusterName), map[string]string{MemberNamespaceUIDAnnotation: nsUID})...)
	cp := &clusterinventory.ClusterProfile{ObjectMeta: metav1.ObjectMeta{Namespace: opts.InventoryNamespace, Name: opts.ClusterName}}
	setProfile(cp, opts, clusterID, "")
	cp.Annotations[MemberNamespaceUIDAnnotation] = nsUID
	p.Hub = append(p.Hub, cp, agentServiceAccount(opts))
	p.Hub = append(p.Hub, role(memberNS, AgentRole, AgentRules(), nil)...)

	for _, crd := range crds {
		p.Member = append(p.Member, crd)
	}
	kubeconfig, err := Kubeconfig(opts.HubServerURL, opts.HubCAData, memberNS, Redacted)
	if err != nil {
		return Plan{}, err
	}
	p.Member = append(p.Member,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleet.SystemNamespace, Labels: map[string]string{CreatedByLabel: createdByValue}}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: fleet.SystemNamespace, Name: fleet.HubKubeconfigSecret}, Data: hubKubeconfigData(opts, kubeconfig)})
	return p, nil
}

// PlanToken is the plan of CreateToken: Join's hub side without the
// cluster ID, and the token's Secret and Roles (the secret redacted).
func PlanToken(opts Options, t TokenOptions) (Plan, error) {
	p, err := PlanJoin(opts, "")
	if err != nil {
		return Plan{}, err
	}
	if t.TTL <= 0 {
		t.TTL = time.Hour
	}
	p.Hub = append(p.Hub, joinerObjects(opts, "<id>", Redacted, time.Now().Add(t.TTL).UTC().Truncate(time.Second), Redacted)...)
	p.Member = nil
	return p, nil
}

// WriteYAML writes the plan's objects as a YAML stream, each with its kind
// and a comment saying on which cluster it is written.
func (p Plan) WriteYAML(w io.Writer, scheme *runtime.Scheme) error {
	for _, side := range []struct {
		name string
		objs []client.Object
	}{{"hub", p.Hub}, {"member", p.Member}} {
		for _, obj := range side.objs {
			gvk, err := apiutil.GVKForObject(obj, scheme)
			if err != nil {
				return err
			}
			obj = obj.DeepCopyObject().(client.Object)
			obj.GetObjectKind().SetGroupVersionKind(gvk)
			data, err := yaml.Marshal(obj)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintf(w, "---\n# on the %s\n%s", side.name, data); err != nil {
				return err
			}
		}
	}
	return nil
}
