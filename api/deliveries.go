package api

import (
	"net/http"
	"net/url"

	"github.com/sluice-gw/sluice/model"
	"github.com/sluice-gw/sluice/raftstore"
)

// deliveryFilter parses the list filters shared by listing and batch retry.
func deliveryFilter(q url.Values) (raftstore.DeliveryFilter, error) {
	var f raftstore.DeliveryFilter
	page, err := parsePage(q.Get("perPage"), q.Get("next_page_cursor"))
	if err != nil {
		return f, err
	}
	f.Page = page
	for _, st := range splitList(q["status"]) {
		s := model.DeliveryStatus(st)
		if !s.Valid() {
			return f, errf(http.StatusBadRequest, "status: %q is not one of scheduled, processing, success, retry, failed, discarded", st)
		}
		f.Status = append(f.Status, s)
	}
	for _, p := range []struct {
		name string
		dst  *string
	}{{"endpointId", &f.EndpointID}, {"eventId", &f.EventID}} {
		if v := q.Get(p.name); v != "" {
			id, err := model.ParseID(v)
			if err != nil {
				return f, errf(http.StatusBadRequest, "%s: %q is not a valid id", p.name, v)
			}
			*p.dst = id
		}
	}
	f.EventType = q.Get("eventType")
	f.From, f.To, err = parseRange(q.Get("startDate"), q.Get("endDate"))
	return f, err
}

func (s *Server) listDeliveries(w http.ResponseWriter, r *http.Request, a *access) error {
	f, err := deliveryFilter(r.URL.Query())
	if err != nil {
		return err
	}
	ds, next, err := s.queryDeliveries(a, r.URL.Query(), f)
	if err != nil {
		return err
	}
	if ds == nil {
		ds = []*model.Delivery{}
	}
	writeJSON(w, http.StatusOK, "Event deliveries fetched successfully", pageData{Content: ds,
		Pagination: pagination{PerPage: f.Limit, HasNextPage: next != "", NextPageCursor: next}})
	return nil
}

func (s *Server) delivery(r *http.Request, a *access) (*model.Delivery, error) {
	did, err := pathID(r, "deliveryID")
	if err != nil {
		return nil, err
	}
	d, err := s.st.Delivery(a.project.UID, did)
	if err == nil {
		if e := s.st.Endpoint(a.project.UID, d.EndpointID); a.portal != nil && (e == nil || !a.owns(e)) {
			return nil, errf(http.StatusNotFound, "delivery %s not found", did)
		}
	}
	return d, err
}

func (s *Server) getDelivery(w http.ResponseWriter, r *http.Request, a *access) error {
	d, err := s.delivery(r, a)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, "Event delivery fetched successfully", d)
	return nil
}

func (s *Server) resendDelivery(w http.ResponseWriter, r *http.Request, a *access) error {
	d, err := s.delivery(r, a)
	if err != nil {
		return err
	}
	now := s.clock.Now().UTC()
	if _, err := s.propose(r, raftstore.CmdResend, raftstore.Resend{ProjectID: a.project.UID, DeliveryIDs: []string{d.UID}, At: now}, nil); err != nil {
		return err
	}
	d, err = s.st.Delivery(a.project.UID, d.UID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, "Event delivery scheduled for resend", d)
	return nil
}

// maxBatchRetry bounds one batch retry; the response says how many matched so a caller can repeat.
const maxBatchRetry = 10000

func (s *Server) batchRetry(w http.ResponseWriter, r *http.Request, a *access) error {
	f, err := deliveryFilter(r.URL.Query())
	if err != nil {
		return err
	}
	if len(f.Status) == 0 {
		// Retrying successes by accident would resend them all: default to what has not succeeded.
		f.Status = []model.DeliveryStatus{model.StatusFailed, model.StatusDiscarded}
	}
	f.Limit = 1000
	pid := a.project.UID
	now := s.clock.Now().UTC()
	total := 0
	for total < maxBatchRetry {
		ds, next, err := s.queryDeliveries(a, r.URL.Query(), f)
		if err != nil {
			return err
		}
		if len(ds) > 0 {
			ids := make([]string, len(ds))
			for i, d := range ds {
				ids[i] = d.UID
			}
			res, err := s.propose(r, raftstore.CmdResend, raftstore.Resend{ProjectID: pid, DeliveryIDs: ids, At: now}, nil)
			if err != nil {
				return err
			}
			total += res.Count
		}
		if next == "" {
			break
		}
		// The cursor is where the walk stopped (after the page, or after its scan budget).
		f.Cursor = next
	}
	writeJSON(w, http.StatusOK, "Batch retry scheduled", map[string]int{"num_success": total})
	return nil
}

func (s *Server) listAttempts(w http.ResponseWriter, r *http.Request, a *access) error {
	d, err := s.delivery(r, a)
	if err != nil {
		return err
	}
	as, err := s.st.Attempts(a.project.UID, d.UID)
	if err != nil {
		return err
	}
	if as == nil {
		as = []*model.Attempt{}
	}
	writeJSON(w, http.StatusOK, "Delivery attempts fetched successfully", as)
	return nil
}

func (s *Server) getAttempt(w http.ResponseWriter, r *http.Request, a *access) error {
	d, err := s.delivery(r, a)
	if err != nil {
		return err
	}
	aid, err := pathID(r, "attemptID")
	if err != nil {
		return err
	}
	at, err := s.st.Attempt(a.project.UID, d.UID, aid)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, "Delivery attempt fetched successfully", at)
	return nil
}
