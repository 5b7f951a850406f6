export type AppointmentStatus = 'booked' | 'arrived' | 'in_progress' | 'finished' | 'cancelled' | 'no_show';

export const STATUSES: readonly AppointmentStatus[] = ['booked', 'arrived', 'in_progress', 'finished', 'cancelled', 'no_show'];

const NEXT: Readonly<Record<AppointmentStatus, readonly AppointmentStatus[]>> = {
  booked: ['arrived', 'cancelled', 'no_show'],
  arrived: ['in_progress'],
  in_progress: ['finished'],
  finished: [],
  cancelled: [],
  no_show: [],
};

/** The statuses an appointment in `status` may move to (empty for final or unknown statuses). */
export function allowedTransitions(status: string): readonly AppointmentStatus[] {
  return (NEXT as Record<string, readonly AppointmentStatus[]>)[status] ?? [];
}

export function isFinalStatus(status: string): boolean {
  return allowedTransitions(status).length === 0;
}

const STATUS_LABEL: Record<AppointmentStatus, string> = {
  booked: 'Booked',
  arrived: 'Arrived',
  in_progress: 'In progress',
  finished: 'Finished',
  cancelled: 'Cancelled',
  no_show: 'No-show',
};

/** "In progress" for "in_progress"; unknown statuses are shown as they come. */
export function statusLabel(status: string): string {
  return (STATUS_LABEL as Record<string, string>)[status] ?? status.replace(/_/g, ' ');
}

const ACTION_LABEL: Record<AppointmentStatus, string> = {
  booked: 'Rebook',
  arrived: 'Mark arrived',
  in_progress: 'Start visit',
  finished: 'Finish visit',
  cancelled: 'Cancel',
  no_show: 'Mark no-show',
};

/** The button text for moving an appointment to `to`. */
export function transitionActionLabel(to: AppointmentStatus): string {
  return ACTION_LABEL[to];
}

/** Transitions that throw away the visit; the UI asks before doing them. */
export function needsConfirmation(to: AppointmentStatus): boolean {
  return to === 'cancelled' || to === 'no_show';
}

export function kindLabel(kind: string): string {
  if (kind === 'video') return 'Video';
  if (kind === 'in_person') return 'In person';
  return kind.replace(/_/g, ' ');
}
