import { describe, expect, it } from 'vitest';
import { allowedTransitions, isFinalStatus, needsConfirmation, statusLabel, transitionActionLabel } from '../src/lib/transitions';

describe('allowedTransitions', () => {
  it('follows the appointment life cycle', () => {
    expect(allowedTransitions('booked')).toEqual(['arrived', 'cancelled', 'no_show']);
    expect(allowedTransitions('arrived')).toEqual(['in_progress']);
    expect(allowedTransitions('in_progress')).toEqual(['finished']);
  });

  it('has nothing after a final status or for unknown statuses', () => {
    for (const s of ['finished', 'cancelled', 'no_show', 'mystery', '']) {
      expect(allowedTransitions(s)).toEqual([]);
      expect(isFinalStatus(s)).toBe(true);
    }
    expect(isFinalStatus('booked')).toBe(false);
  });

  it('labels statuses and actions', () => {
    expect(statusLabel('in_progress')).toBe('In progress');
    expect(statusLabel('no_show')).toBe('No-show');
    expect(statusLabel('on_hold')).toBe('on hold');
    expect(transitionActionLabel('arrived')).toBe('Mark arrived');
    expect(transitionActionLabel('in_progress')).toBe('Start visit');
    expect(transitionActionLabel('finished')).toBe('Finish visit');
  });

  it('asks before cancelling or marking a no-show', () => {
    expect(needsConfirmation('cancelled')).toBe(true);
    expect(needsConfirmation('no_show')).toBe(true);
    expect(needsConfirmation('arrived')).toBe(false);
  });
});
