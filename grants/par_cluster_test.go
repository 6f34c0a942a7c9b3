package grants

import (
	"net/http"
	"sync"
	"testing"

	"github.com/oauthgate/caddy-oauthgate/storage/postgres"
)

// testPARAcrossNodes: a request_uri pushed to one node is usable at
// another on the same PostgreSQL, once: of several nodes spending it at
// the same instant, one shows the sign-in page and the others refuse it
// (the record is read and deleted in one transaction).
func testPARAcrossNodes(t *testing.T, stores []*postgres.Store) {
	engines := clusterEngines(t, stores, 0)
	for round := range 3 {
		uri := wantPushed(t, parPost(engines[0], "c-web", parForm("c-web", newChallenge()), ""), 60)
		// Another client's attempt on another node leaves it usable.
		wantRequestURIInvalid(t, newBrowser(t, engines[1]).get(parAuthorize("c-basic", uri)))
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			signIn int
			start  = make(chan struct{})
		)
		for _, e := range engines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				rec := newBrowser(t, e).get(parAuthorize("c-web", uri))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case rec.Code == http.StatusOK && isLoginPage(rec):
					signIn++
				case rec.Code != http.StatusBadRequest:
					t.Errorf("round %d: a losing node answered %d, want 400 invalid_request_uri", round, rec.Code)
				}
			}()
		}
		close(start)
		wg.Wait()
		if signIn != 1 {
			t.Fatalf("round %d: %d nodes accepted the request_uri, want 1", round, signIn)
		}
	}
}
