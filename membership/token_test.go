package membership_test

import (
	"context"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/membership"
)

// TestTokenJoin joins a member in two steps that share no credentials: the
// hub step holds only the hub's admin client, the member step only the
// member's admin client and the encoded token. The token may do nothing
// but its join, the apiserver refuses it once expired and once used, and a
// refused join writes nothing on the member.
func TestTokenJoin(t *testing.T) {
	hub := testenv.Start(t, "token-hub", testenv.WithBootstrapTokenAuth())
	member := testenv.Start(t, "token-member")
	ctx := context.Background()
	scheme := testenv.Scheme()
	must(t, apiextensionsv1.AddToScheme(scheme))
	memberAdmin, err := client.New(member.Config, client.Options{Scheme: scheme})
	must(t, err)
	hubSide := func(name string, ttl time.Duration) string {
		tok, err := membership.CreateToken(ctx, hub.Client, membership.Options{
			ClusterName: name, HubServerURL: hub.Config.Host, HubCAData: hub.Config.CAData, Labels: map[string]string{"team": "b"},
		}, membership.TokenOptions{TTL: ttl})
		must(t, err)
		return tok.Encode()
	}
	// The member step sees nothing but this string.
	memberSide := func(encoded string) ([]byte, error) {
		tok, err := membership.DecodeJoinToken(encoded)
		if err != nil {
			return nil, err
		}
		return membership.JoinWithToken(ctx, memberAdmin, tok, membership.Options{})
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: fleet.SystemNamespace, Name: fleet.HubKubeconfigSecret}}

	expiring := hubSide("m-late", 2*time.Second)
	encoded := hubSide("m2", time.Hour)

	// The hub step prepared the hub side: profile with the hub admin's
	// labels, no cluster ID yet.
	cp := &clusterinventory.ClusterProfile{}
	must(t, hub.Client.Get(ctx, client.ObjectKey{Namespace: fleet.DefaultInventoryNamespace, Name: "m2"}, cp))
	if cp.Labels["team"] != "b" || cp.Annotations[fleet.ClusterIDAnnotation] != "" {
		t.Errorf("profile after token create: labels %v annotations %v, want team=b and no cluster ID", cp.Labels, cp.Annotations)
	}

	// The token's identity can do its join and nothing else.
	tok, err := membership.DecodeJoinToken(encoded)
	must(t, err)
	joiner, err := client.New(tok.RESTConfig(), client.Options{Scheme: scheme})
	must(t, err)
	must(t, joiner.Get(ctx, client.ObjectKey{Namespace: fleet.DefaultInventoryNamespace, Name: "m2"}, &clusterinventory.ClusterProfile{}))
	for what, err := range map[string]error{
		"list Secrets in kube-system":     joiner.List(ctx, &corev1.SecretList{}, client.InNamespace(metav1.NamespaceSystem)),
		"read another profile":            joiner.Get(ctx, client.ObjectKey{Namespace: fleet.DefaultInventoryNamespace, Name: "m-late"}, &clusterinventory.ClusterProfile{}),
		"list dispatches of m2":           joiner.List(ctx, &fleet.JobSetDispatchList{}, client.InNamespace(fleet.MemberNamespace("m2"))),
		"read the agent's ServiceAccount": joiner.Get(ctx, client.ObjectKey{Namespace: fleet.MemberNamespace("m2"), Name: membership.AgentRole}, &corev1.ServiceAccount{}),
		"mint a token for the agent": joiner.SubResource("token").Create(ctx,
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: fleet.MemberNamespace("m2"), Name: membership.AgentServiceAccount}}, &authenticationv1.TokenRequest{}),
		"create a ServiceAccount": joiner.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: fleet.MemberNamespace("m2"), Name: "x"}}),
	} {
		if !apierrors.IsForbidden(err) {
			t.Errorf("join token: %s: want Forbidden, got %v", what, err)
		}
	}

	// Expired: the apiserver refuses it; nothing is written on the member.
	late, err := membership.DecodeJoinToken(expiring)
	must(t, err)
	time.Sleep(time.Until(late.Expires) + time.Second)
	if _, err := memberSide(expiring); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired token: want a refusal saying it expired, got %v", err)
	}
	if err := memberAdmin.Get(ctx, client.ObjectKeyFromObject(secret), secret); !apierrors.IsNotFound(err) {
		t.Errorf("refused join wrote Secret %s: %v", client.ObjectKeyFromObject(secret), err)
	}

	kubeconfig, err := memberSide(encoded)
	must(t, err)
	must(t, memberAdmin.Get(ctx, client.ObjectKeyFromObject(secret), secret))
	if string(secret.Data[fleet.HubKubeconfigKey]) != string(kubeconfig) || string(secret.Data[fleet.ClusterNameKey]) != "m2" {
		t.Error("member Secret does not hold the agent's kubeconfig and name")
	}
	must(t, memberAdmin.Get(ctx, client.ObjectKey{Name: "jobsets.jobset.x-k8s.io"}, &apiextensionsv1.CustomResourceDefinition{}))
	agent := clientFor(t, kubeconfig, scheme)
	must(t, agent.Get(ctx, client.ObjectKey{Namespace: fleet.DefaultInventoryNamespace, Name: "m2"}, cp))
	if got, want := cp.Annotations[fleet.ClusterIDAnnotation], kubeSystemUID(t, memberAdmin); got != want {
		t.Errorf("profile's cluster ID %q, want the member's kube-system UID %q", got, want)
	}

	// Spent: the apiserver refuses the token from now on (its Secret is
	// gone; the authenticator sees that within its informer's delay).
	testenv.Eventually(t, 10*time.Second, "the spent token refused", func() error {
		err := joiner.Get(ctx, client.ObjectKey{Namespace: fleet.DefaultInventoryNamespace, Name: "m2"}, &clusterinventory.ClusterProfile{})
		if apierrors.IsUnauthorized(err) {
			return nil
		}
		return err
	})
	if _, err := memberSide(encoded); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Errorf("second use: want a refusal saying it was used, got %v", err)
	}

	// A new token revokes the cluster's earlier one.
	first, second := hubSide("m4", time.Hour), hubSide("m4", time.Hour)
	firstTok, err := membership.DecodeJoinToken(first)
	must(t, err)
	firstClient, err := client.New(firstTok.RESTConfig(), client.Options{Scheme: scheme})
	must(t, err)
	testenv.Eventually(t, 10*time.Second, "the revoked token refused", func() error {
		err := firstClient.Get(ctx, client.ObjectKey{Namespace: fleet.DefaultInventoryNamespace, Name: "m4"}, &clusterinventory.ClusterProfile{})
		if apierrors.IsUnauthorized(err) {
			return nil
		}
		return err
	})
	secondTok, err := membership.DecodeJoinToken(second)
	must(t, err)
	secondClient, err := client.New(secondTok.RESTConfig(), client.Options{Scheme: scheme})
	must(t, err)
	must(t, secondClient.Get(ctx, client.ObjectKey{Namespace: fleet.DefaultInventoryNamespace, Name: "m4"}, &clusterinventory.ClusterProfile{}))

	// Unjoin removes the tokens and their Roles with the rest.
	must(t, membership.Unjoin(ctx, hub.Client, memberAdmin, membership.Options{ClusterName: "m4"}))
	if err := hub.Client.Get(ctx, client.ObjectKey{Namespace: fleet.DefaultInventoryNamespace, Name: membership.JoinerRole + "-m4"}, &rbacv1.Role{}); !apierrors.IsNotFound(err) {
		t.Errorf("joiner Role after unjoin: want NotFound, got %v", err)
	}
	var tokens corev1.SecretList
	must(t, hub.Client.List(ctx, &tokens, client.InNamespace(metav1.NamespaceSystem), client.MatchingLabels{membership.JoinClusterLabel: "m4"}))
	if len(tokens.Items) != 0 {
		t.Errorf("%d join tokens of m4 left after unjoin", len(tokens.Items))
	}
}
